"""The notification outbox: deliveries queued with their events, claimed lane by lane."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from db.driver import compact, fetch_all
from db.models import NotificationOutbox as Outbox


@dataclass(frozen=True)
class Claimed:
    id: int
    subscription_id: str
    target: str
    event_id: str
    attempt: int  # 1 for the first claim of this row


_TABLE = Outbox.__table__  # type: ignore[attr-defined]
_ENQUEUE = insert(_TABLE).on_conflict_do_nothing()
_FINISH = delete(_TABLE).where(_TABLE.c.id.in_(bindparam("ids", expanding=True)))


async def enqueue(
    session: AsyncSession, deliveries: Sequence[tuple[str, str, str]], now: datetime
) -> None:
    """Queue (subscription_id, target, event_id) deliveries; one already queued is kept.
    (A projection queues its events' deliveries within its own statement:
    db.repositories.projection.)"""
    if not deliveries:
        return
    rows = [
        {
            "subscription_id": sub,
            "target": target,
            "event_id": event_id,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for sub, target, event_id in deliveries
    ]
    await session.execute(_ENQUEUE, rows)


# The head of each lane (its oldest row) is what may go out. Of the heads that are due and
# not claimed by a live dispatcher, up to `limit` are locked and claimed until `until`;
# SKIP LOCKED makes dispatchers claiming at the same moment take different rows, and the
# lock re-checks the claim, so a row claimed and committed meanwhile is left alone.
# A claimed row is read as `Claimed`: each field from its column of the table model.
_CLAIMED_FROM = {
    f.name: _TABLE.c["attempts" if f.name == "attempt" else f.name].name for f in fields(Claimed)
}
_CLAIM = compact(
    f"""
    WITH heads AS (
        SELECT DISTINCT ON (subscription_id, target) id
        FROM notification_outbox
        ORDER BY subscription_id, target, id
    ), due AS (
        SELECT o.id FROM notification_outbox AS o JOIN heads ON heads.id = o.id
        WHERE o.next_attempt_at <= %(now)s
          AND (o.claimed_until IS NULL OR o.claimed_until < %(now)s)
        ORDER BY o.next_attempt_at, o.id
        LIMIT %(limit)s
        FOR UPDATE OF o SKIP LOCKED
    )
    UPDATE notification_outbox AS o
    SET claimed_until = %(until)s, attempts = o.attempts + 1
    FROM due
    WHERE o.id = due.id
    RETURNING {", ".join(f"o.{column} AS {name}" for name, column in _CLAIMED_FROM.items())}
    """
)


async def claim(
    session: AsyncSession, *, limit: int, now: datetime, until: datetime
) -> list[Claimed]:
    """Claim up to `limit` due lane heads until `until`, oldest due first."""
    rows = await fetch_all(session, _CLAIM, {"now": now, "until": until, "limit": limit})
    claimed = [Claimed(**row) for row in rows]
    claimed.sort(key=lambda c: c.id)
    return claimed


async def finish(session: AsyncSession, row_ids: Sequence[int]) -> None:
    """Done (delivered, skipped or given up): the lane's next row becomes its head."""
    if row_ids:
        await session.execute(_FINISH, {"ids": list(row_ids)})


async def retry_at(session: AsyncSession, row_id: int, at: datetime) -> None:
    """A failed attempt: release the claim; the row stays the lane's head until `at`."""
    await session.execute(
        update(Outbox)
        .where(col(Outbox.id) == row_id)
        .values(next_attempt_at=at, claimed_until=None)
    )


async def pending(session: AsyncSession, subscription_id: str | None = None) -> int:
    """How many deliveries are queued (for tests, benchmarks and operators)."""
    query = select(func.count()).select_from(Outbox)
    if subscription_id is not None:
        query = query.where(col(Outbox.subscription_id) == subscription_id)
    return int((await session.execute(query)).scalar_one())
