"""Creating, listing and revoking API keys: shared by the admin routes and `recur keys`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from api.auth import KeyCache, Role, hash_key, new_raw_key
from api.ids import new_id
from db.models import ApiKey
from db.repositories import api_keys


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


async def create(session: AsyncSession, role: Role, name: str | None) -> tuple[ApiKey, str]:
    """Mint a key and add it to the caller's unit of work."""
    row, raw = mint(role, name)
    api_keys.add(session, row)
    return row, raw


async def all_keys(session: AsyncSession) -> Sequence[ApiKey]:
    return await api_keys.all_keys(session)


async def revoke(session: AsyncSession, key_id: str) -> ApiKey | None:
    return await api_keys.revoke(session, key_id, datetime.now(UTC))


async def revoke_now(session: AsyncSession, cache: KeyCache, key_id: str) -> ApiKey | None:
    """Revoke the key and drop it from this process's cache. Commits the caller's unit of
    work before the cache forgets the key: a request that looked the key up in between
    would otherwise find it still valid and cache it again."""
    row = await revoke(session, key_id)
    if row is not None:
        await session.commit()
        cache.forget(row.key_hash)
    return row
