"""`Idempotency-Key` for creating POSTs.

The key is reserved (a row inserted under the unique (API key, Idempotency-Key), committed
on its own) before the route does any work, so of concurrent identical requests exactly one
does the work. The others wait up to `idempotency_wait_seconds` for its answer and replay
it, or get 409 `idempotency_in_progress`. Same key + another body: 409
`idempotency_key_reused`. A request that fails (any error, 4xx or 5xx) releases its
reservation, so the key may be sent again; a reservation whose process died is taken over
after `idempotency_lock_seconds`. Records expire `idempotency_ttl_hours` after they were
reserved; each reservation also deletes a batch of expired ones.

Routes take `idem: IdempotencyDep`, start with
`if (replay := await idem.replay()) is not None: return replay`
and answer with `return await idem.respond(status, body)`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from api.auth import Principal
from api.deps import CurrentKey, SessionDep
from config import Settings
from db.repositories import idempotency as records
from domain import errors

log = structlog.get_logger()

# Expired records each reservation deletes at most (more than one per request, so the purge
# keeps up with any rate of creation).
PURGE_BATCH = 100
_FIRST_POLL = 0.02
_LONGEST_POLL = 0.25


class Idempotency:
    """One request's use of its `Idempotency-Key` (if it sent one)."""

    def __init__(self, request: Request, session: AsyncSession, principal: Principal) -> None:
        self._request = request
        self._session = session
        self.key = request.headers.get("idempotency-key")
        self._ref = records.KeyRef(principal.key_id, self.key or "")
        self._hash = ""
        self._token: str | None = None  # the reservation this request holds

    async def replay(self) -> JSONResponse | None:
        """None: go ahead (the key, if any, is now reserved by this request); otherwise the
        stored answer of the same request, to return as is."""
        if self.key is None:
            return None
        if not 1 <= len(self.key) <= 255:
            raise errors.INVALID_IDEMPOTENCY_KEY("Idempotency-Key must be 1-255 characters")
        body = await self._request.body()
        self._hash = hashlib.sha256(self._request.url.path.encode() + b"\0" + body).hexdigest()
        settings: Settings = self._request.app.state.settings
        ttl = timedelta(hours=settings.idempotency_ttl_hours)
        lock = timedelta(seconds=settings.idempotency_lock_seconds)
        give_up = time.monotonic() + settings.idempotency_wait_seconds
        pause = _FIRST_POLL
        while True:
            now = datetime.now(UTC)
            await records.purge(self._session, older_than=now - ttl, limit=PURGE_BATCH)
            if await self._claim(now):
                return None
            seen = await records.find(self._session, self._ref)
            await self._session.commit()
            if seen is None:  # released between our insert and our read: try again
                continue
            if seen.created_at <= now - ttl:  # expired: this is a new request
                if await self._claim(now, seen):
                    return None
                continue
            if seen.status_code is None and seen.created_at <= now - lock:
                # Its request's process died without answering or releasing it: the key is
                # as free as if that request had failed.
                log.warning("idempotency.reservation_taken_over", path=self._request.url.path)
                if await self._claim(now, seen):
                    return None
                continue
            if seen.request_hash != self._hash:
                raise errors.IDEMPOTENCY_KEY_REUSED(
                    "This Idempotency-Key was used with a different request"
                )
            if seen.status_code is not None:
                return _replayed(seen)
            if time.monotonic() >= give_up:
                raise errors.IDEMPOTENCY_IN_PROGRESS(
                    "A request with this Idempotency-Key is still in progress; retry later"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LONGEST_POLL)

    async def respond(self, status: int, body: Any, *, secret: str | None = None) -> JSONResponse:
        """The answer, stored under the key first (commits the session). `secret` names a
        field of `body` shown only now: the stored answer, and so every replay, has it null."""
        content = jsonable_encoder(body)
        if self._token is not None:
            stored = {**content, secret: None} if secret and isinstance(content, dict) else content
            kept = await records.answer(
                self._session,
                self._ref,
                self._token,
                status_code=status,
                body=stored,
                redacted=secret if stored is not content else None,
            )
            await self._session.commit()
            self._token = None  # answered (had the commit failed, the reservation is released)
            if not kept:
                log.warning("idempotency.reservation_lost", path=self._request.url.path)
        return JSONResponse(status_code=status, content=content)

    async def release(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """The request failed: drop its reservation (in a session of its own, since the
        route's may be in a failed transaction) so that the key may be sent again."""
        if self._token is None:
            return
        token, self._token = self._token, None
        try:
            async with sessions() as session:
                await records.release(session, self._ref, token)
                await session.commit()
        except Exception:
            # Not fatal: the reservation is taken over once `idempotency_lock_seconds` pass.
            log.exception("idempotency.release_failed", path=self._request.url.path)

    async def _claim(self, now: datetime, seen: records.Seen | None = None) -> bool:
        """Make the key this request's: a new reservation, or (`seen`) the takeover of an
        expired record or an abandoned reservation. False: another request got there first."""
        token = uuid.uuid4().hex
        claim = (
            partial(records.reserve, self._session, self._ref)
            if seen is None
            else partial(records.take_over, self._session, self._ref, seen)
        )
        claimed = await claim(
            method=self._request.method,
            path=self._request.url.path,
            request_hash=self._hash,
            token=token,
            now=now,
        )
        await self._session.commit()
        if claimed:
            self._token = token
        return claimed


def _replayed(seen: records.Seen) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"}
    if seen.redacted:
        headers["Idempotency-Redacted"] = seen.redacted
    assert seen.status_code is not None
    return JSONResponse(status_code=seen.status_code, content=seen.response_body, headers=headers)


async def idempotency(
    request: Request, session: SessionDep, principal: CurrentKey
) -> AsyncIterator[Idempotency]:
    """The request's `Idempotency`; whatever the route raises releases its reservation, as
    does a route that returns without `respond`."""
    idem = Idempotency(request, session, principal)
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    try:
        yield idem
    finally:
        await idem.release(sessions)


# Scope "function", as the session it uses (FastAPI refuses a longer-lived dependant).
IdempotencyDep = Annotated[Idempotency, Depends(idempotency, scope="function")]
