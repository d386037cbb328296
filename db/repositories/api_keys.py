"""API keys, stored as SHA-256 hashes of the raw key."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import ApiKey


def add(session: AsyncSession, row: ApiKey) -> None:
    session.add(row)


async def active_by_hash(session: AsyncSession, key_hash: str) -> ApiKey | None:
    """The key with this hash, unless it was revoked."""
    query = select(ApiKey).where(ApiKey.key_hash == key_hash, col(ApiKey.revoked_at).is_(None))
    return (await session.exec(query)).first()


async def all_keys(session: AsyncSession) -> Sequence[ApiKey]:
    return (await session.exec(select(ApiKey).order_by(col(ApiKey.created_at)))).all()


async def revoke(session: AsyncSession, key_id: str, now: datetime) -> ApiKey | None:
    """Revoke the key (a key revoked already keeps its time); None if there is none."""
    row = await session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
    return row


async def ensure(
    session: AsyncSession,
    *,
    key_id: str,
    name: str,
    role: str,
    key_hash: str,
    prefix: str,
    now: datetime,
) -> None:
    """Create the key, or point an existing one with this id at `key_hash` and un-revoke it."""
    statement = insert(ApiKey).values(
        id=key_id, name=name, role=role, key_hash=key_hash, prefix=prefix, created_at=now
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["id"],
            set_={
                "key_hash": statement.excluded.key_hash,
                "prefix": statement.excluded.prefix,
                "revoked_at": None,
            },
        )
    )
