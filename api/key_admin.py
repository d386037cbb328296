"""Creating, listing and revoking API keys: shared by the admin routes and `recur keys`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from api.auth import Role, hash_key, new_raw_key
from api.ids import new_id
from db.models import ApiKey


def mint(role: Role, name: str | None) -> tuple[ApiKey, str]:
    """A new key row and the raw key (the only time it exists in clear)."""
    raw = new_raw_key(role)
    row = ApiKey(
        id=new_id("key"),
        name=name,
        role=role.value,
        key_hash=hash_key(raw),
        prefix=raw[:12],
        created_at=datetime.now(UTC),
    )
    return row, raw


async def all_keys(session: AsyncSession) -> Sequence[ApiKey]:
    return (await session.exec(select(ApiKey).order_by(col(ApiKey.created_at)))).all()


async def revoke(session: AsyncSession, key_id: str) -> ApiKey | None:
    row = await session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        session.add(row)
    return row
