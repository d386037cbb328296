"""The notification outbox: deliveries queued with their events, claimed lane by lane."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from db.delivery_tables import NotificationOutbox as Outbox
from db.driver import compact, fetch_all


@dataclass(frozen=True)
class Claimed:
    id: int
    subscription_id: str
    target: str
    event_id: str
    attempt: int  # 1 for the first claim of this row


_TABLE = Outbox.__table__  # type: ignore[attr-defined]
_FINISH = delete(_TABLE).where(_TABLE.c.id.in_(bindparam("ids", expanding=True)))


def endpoint_wants(event_type: str, now: str) -> str:
    """The routing rule of webhooks, as an SQL condition on the endpoint row `e`: the
    endpoint gets an event of type `event_type` written at `now` (both SQL expressions)
    when it is enabled, was registered by then (real time, not a test clock's) and one of
    its patterns matches: `*`, `<prefix>.*` or the exact type (`domain.notifications.
    EVENT_PATTERN` says which patterns exist). The projection's statement and
    `queue_webhooks` both route with it; nothing else does."""
    return f"""NOT e.disabled AND e.created_at <= {now} AND EXISTS (
        SELECT FROM json_array_elements_text(e.events) AS p(pattern)
        WHERE p.pattern = '*' OR p.pattern = {event_type}
           OR (right(p.pattern, 2) = '.*' AND starts_with({event_type}, left(p.pattern, -1)))
    )"""


# Endpoints in registration order: the order their rows are queued in.
_QUEUE_WEBHOOKS = text(
    f"""
    INSERT INTO notification_outbox (subscription_id, target, event_id, attempts,
                                     next_attempt_at, created_at)
    SELECT :subscription_id, e.id, :event_id, 0, :now, :now
    FROM webhook_endpoints AS e
    WHERE {endpoint_wants("CAST(:event_type AS text)", ":now")}
    ORDER BY e.created_at, e.id
    ON CONFLICT DO NOTHING
    RETURNING target
    """
)


async def queue_webhooks(
    session: AsyncSession, subscription_id: str, event_id: str, event_type: str, now: datetime
) -> list[str]:
    """Queue one event's deliveries to the webhook endpoints that want it (a delivery already
    queued is kept); the endpoint ids queued. A projection queues its events' deliveries
    within its own statement (`db.projection`), by the same rule."""
    params = {
        "subscription_id": subscription_id,
        "event_id": event_id,
        "event_type": event_type,
        "now": now,
    }
    result = await session.execute(_QUEUE_WEBHOOKS, params)
    return [str(target) for (target,) in result.all()]


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
