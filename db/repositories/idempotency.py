"""`Idempotency-Key` records: reserve, read, take over, answer, release, purge.

A row whose `status_code` is NULL is a reservation held by the request whose token is in
`reservation`; the compare-and-set statements below only ever touch the row they saw (or
their own reservation), so two requests never both believe they hold one key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import IdempotencyRecord

_T = IdempotencyRecord.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class KeyRef:
    api_key_id: str
    key: str

    def where(self) -> Any:
        return and_(_T.c.api_key_id == self.api_key_id, _T.c.key == self.key)


@dataclass(frozen=True)
class Seen:
    """What a request found under its key."""

    request_hash: str
    status_code: int | None
    response_body: Any
    redacted: str | None
    created_at: datetime


async def reserve(
    session: AsyncSession,
    ref: KeyRef,
    *,
    method: str,
    path: str,
    request_hash: str,
    token: str,
    now: datetime,
) -> bool:
    """Insert the reservation; False if the key already has a row."""
    statement = (
        insert(_T)
        .values(
            api_key_id=ref.api_key_id,
            key=ref.key,
            method=method,
            path=path,
            request_hash=request_hash,
            reservation=token,
            created_at=now,
        )
        .on_conflict_do_nothing()
        .returning(_T.c.key)
    )
    return (await session.execute(statement)).first() is not None


async def find(session: AsyncSession, ref: KeyRef) -> Seen | None:
    query = select(
        _T.c.request_hash, _T.c.status_code, _T.c.response_body, _T.c.redacted, _T.c.created_at
    ).where(ref.where())
    row = (await session.execute(query)).first()
    return Seen(*row) if row else None


async def take_over(
    session: AsyncSession,
    ref: KeyRef,
    seen: Seen,
    *,
    method: str,
    path: str,
    request_hash: str,
    token: str,
    now: datetime,
) -> bool:
    """Reserve a row found expired or abandoned, unless someone changed it since it was read."""
    statement = (
        update(_T)
        .where(ref.where(), _T.c.created_at == seen.created_at)
        .values(
            method=method,
            path=path,
            request_hash=request_hash,
            reservation=token,
            status_code=None,
            response_body=None,
            redacted=None,
            created_at=now,
        )
        .returning(_T.c.key)
    )
    return (await session.execute(statement)).first() is not None


async def answer(
    session: AsyncSession,
    ref: KeyRef,
    token: str,
    *,
    status_code: int,
    body: Any,
    redacted: str | None,
) -> bool:
    """Store the answer of the reservation `token`; False if it was taken over meanwhile."""
    statement = (
        update(_T)
        .where(ref.where(), _T.c.reservation == token)
        .values(status_code=status_code, response_body=body, redacted=redacted, reservation=None)
        .returning(_T.c.key)
    )
    return (await session.execute(statement)).first() is not None


async def release(session: AsyncSession, ref: KeyRef, token: str) -> None:
    """Drop the reservation `token` (its request failed): the key may be sent again."""
    await session.execute(
        delete(_T).where(ref.where(), _T.c.reservation == token, _T.c.status_code.is_(None))
    )


async def purge(session: AsyncSession, *, older_than: datetime, limit: int) -> None:
    """Delete up to `limit` expired records; rows another transaction holds are skipped (so
    concurrent purges neither wait for nor deadlock with each other)."""
    expired = (
        select(_T.c.api_key_id, _T.c.key)
        .where(_T.c.created_at < older_than)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    await session.execute(delete(_T).where(tuple_(_T.c.api_key_id, _T.c.key).in_(expired)))
