"""Database-side work behind `recur keys` and `recur subs reconcile` (runs without the
API)."""

from __future__ import annotations

from api import key_admin
from api.auth import Role
from api.reconcile import Orphan
from config import get_settings
from db.engine import get_engine, transaction
from db.repositories import api_keys


async def create_key(role: str, name: str | None) -> tuple[str, str]:
    try:
        parsed = Role(role)
    except ValueError:
        raise ValueError(f"role must be one of {[r.value for r in Role]}") from None
    row, raw = key_admin.mint(parsed, name)
    engine = get_engine(get_settings().effective_database_url)
    async with transaction(engine) as session:
        api_keys.add(session, row)
    await engine.dispose()
    return row.id, raw


async def list_keys() -> list[list[str]]:
    engine = get_engine(get_settings().effective_database_url)
    async with transaction(engine) as session:
        rows = await key_admin.all_keys(session)
    await engine.dispose()
    return [
        [
            r.id,
            r.role,
            r.name or "",
            r.prefix + "…",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "",
        ]
        for r in rows
    ]


async def revoke_key(key_id: str) -> bool:
    engine = get_engine(get_settings().effective_database_url)
    async with transaction(engine) as session:
        row = await key_admin.revoke(session, key_id)
    await engine.dispose()
    return row is not None


async def reconcile_subscriptions(repair: bool) -> list[Orphan]:
    """Live subscriptions whose workflow has closed; with `repair`, recorded as canceled."""
    from api import reconcile
    from db.engine import session_factory
    from worker import connect_temporal

    settings = get_settings()
    client = await connect_temporal(settings)
    engine = get_engine(settings.effective_database_url)
    try:
        async with session_factory(engine)() as session:
            orphans = await reconcile.find(client, session)
        if repair:
            async with transaction(engine) as session:
                for orphan in orphans:
                    await reconcile.repair(session, orphan)
    finally:
        await engine.dispose()
    return orphans
