"""API keys: random, shown once, stored as SHA-256 hashes, one role each.

Verified keys are cached in-process for `api_key_cache_seconds`, so the hot paths
(entitlement checks) make no database round trip for auth. A revoke through this
process takes effect at once; other processes see it within the cache window.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import ApiKey


class Role(StrEnum):
    ADMIN = "admin"
    PRODUCT = "product"
    SUPPORT = "support"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key id is the actor recorded on the timeline."""

    key_id: str
    role: Role

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def new_raw_key(role: Role) -> str:
    return f"rk_{role.value[:4]}_{secrets.token_urlsafe(24)}"


class KeyCache:
    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._entries: dict[str, tuple[Principal | None, float]] = {}

    async def resolve(self, session_factory: object, raw: str) -> Principal | None:
        digest = hash_key(raw)
        hit = self._entries.get(digest)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        async with session_factory() as session:  # type: ignore[operator]
            principal = await lookup(session, digest)
        self._entries[digest] = (principal, now + self._ttl)
        return principal

    def forget(self, key_hash: str | None = None) -> None:
        if key_hash is None:
            self._entries.clear()
        else:
            self._entries.pop(key_hash, None)


async def lookup(session: AsyncSession, digest: str) -> Principal | None:
    row = (
        await session.exec(
            select(ApiKey).where(ApiKey.key_hash == digest, col(ApiKey.revoked_at).is_(None))
        )
    ).first()
    return Principal(row.id, Role(row.role)) if row else None
