"""API keys: random, shown once, stored as SHA-256 hashes, one role each.

Verified keys are cached in-process for `api_key_cache_seconds`, so the hot paths
(entitlement checks) make no database round trip for auth. A revoke through this
process takes effect at once; other processes see it within the cache window. The cache
holds at most `api_key_cache_size` keys.

Unknown keys are remembered too, in a cache of their own: for a few seconds
(`api_key_unknown_cache_seconds`), so a client repeating a wrong key costs one lookup, and
at most `api_key_unknown_cache_size` of them, so a flood of random keys evicts only other
unknown keys, never a verified one, and memory stays bounded whatever the traffic (the
addresses sending them are throttled as well, `api.auth_throttle`). The window is short
because a key unknown now may be created a moment later by another process.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from cachetools import TTLCache
from sqlmodel.ext.asyncio.session import AsyncSession

from config import Settings
from db.repositories import api_keys


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
    """Verified keys (by hash) and, separately, recently unknown ones; both bounded."""

    def __init__(
        self,
        ttl_seconds: float,
        max_keys: int,
        *,
        unknown_ttl_seconds: float,
        max_unknown: int,
    ) -> None:
        self._entries: TTLCache[str, Principal] = TTLCache(maxsize=max_keys, ttl=ttl_seconds)
        self._unknown: TTLCache[str, bool] = TTLCache(maxsize=max_unknown, ttl=unknown_ttl_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyCache:
        return cls(
            settings.api_key_cache_seconds,
            settings.api_key_cache_size,
            unknown_ttl_seconds=settings.api_key_unknown_cache_seconds,
            max_unknown=settings.api_key_unknown_cache_size,
        )

    def __len__(self) -> int:
        """How many verified keys are cached."""
        return len(self._entries)

    @property
    def unknown(self) -> int:
        """How many unknown keys are remembered."""
        return len(self._unknown)

    def cached(self, raw: str) -> Principal | None:
        """The principal of `raw` if this process verified it recently (no lookup)."""
        return self._entries.get(hash_key(raw))

    async def resolve(self, session_factory: object, raw: str) -> Principal | None:
        digest = hash_key(raw)
        principal = self._entries.get(digest)
        if principal is not None or digest in self._unknown:
            return principal
        async with session_factory() as session:  # type: ignore[operator]
            principal = await lookup(session, digest)
        if principal is None:
            self._unknown[digest] = True
        else:
            self._entries[digest] = principal
        return principal

    def forget(self, key_hash: str | None = None) -> None:
        if key_hash is None:
            self._entries.clear()
            self._unknown.clear()
        else:
            self._entries.pop(key_hash, None)
            self._unknown.pop(key_hash, None)


async def lookup(session: AsyncSession, digest: str) -> Principal | None:
    row = await api_keys.active_by_hash(session, digest)
    return Principal(row.id, Role(row.role)) if row else None
