"""The Stripe inbox (`stripe_events`): events recorded once, with the work they still need."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from db.driver import compact, fetch_all
from db.models import Event, StripeEvent, Subscription
from db.repositories import outbox

# Rows the drainer works on; `needs_support` rows wait for a person.
DUE = ("pending", "refunding")


@dataclass(frozen=True)
class Work:
    """What an event asks of its subscription: a payment that succeeded for an invoice."""

    subscription_id: str
    invoice_id: str
    payment_intent_id: str
    amount: int
    currency: str


@dataclass(frozen=True)
class Item:
    """An inbox row claimed for processing."""

    id: str  # the Stripe event id
    status: str  # pending | refunding
    subscription_id: str
    invoice_id: str
    payment_intent_id: str
    amount: int
    currency: str
    attempts: int  # including this one
    refund_key: str | None

    def log_fields(self) -> dict[str, object]:
        """What a log line about this payment names (ids and amount; no card data)."""
        return {
            "stripe_event_id": self.id,
            "subscription_id": self.subscription_id,
            "invoice_id": self.invoice_id,
            "payment_intent_id": self.payment_intent_id,
            "amount": self.amount,
            "currency": self.currency,
        }


async def record(session: AsyncSession, event_id: str, event_type: str, now: datetime) -> bool:
    """Record the event as received, with nothing left to do; False if it was already."""
    fresh = await session.execute(
        insert(StripeEvent)
        .values(
            id=event_id,
            type=event_type,
            received_at=now,
            status="done",
            attempts=0,
            processed_at=now,
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(col(StripeEvent.id))
    )
    return fresh.first() is not None


async def hand_off(
    session: AsyncSession,
    event_id: str,
    work: Work,
    now: datetime,
    *,
    claimed_until: datetime | None,
) -> None:
    """The recorded event has `work` to do: queue it (claimed until `claimed_until` by the
    caller, who tries it at once; the drainer takes it when the claim runs out)."""
    await session.execute(
        update(StripeEvent)
        .where(col(StripeEvent.id) == event_id)
        .values(
            status="pending",
            subscription_id=work.subscription_id,
            invoice_id=work.invoice_id,
            payment_intent_id=work.payment_intent_id,
            amount=work.amount,
            currency=work.currency,
            attempts=1 if claimed_until is not None else 0,
            next_attempt_at=now,
            claimed_until=claimed_until,
            processed_at=None,
        )
    )


_STRIPE_EVENTS = StripeEvent.__table__  # type: ignore[attr-defined]
# A claimed row is read as an `Item`: its fields, each a column of the table model.
_ITEM_COLUMNS = ", ".join(f"s.{_STRIPE_EVENTS.c[f.name].name}" for f in fields(Item))
_CLAIM = compact(
    f"""
    WITH due AS (
        SELECT id FROM stripe_events
        WHERE processed_at IS NULL AND status IN ('pending', 'refunding')
          AND next_attempt_at <= %(now)s AND (claimed_until IS NULL OR claimed_until < %(now)s)
        ORDER BY next_attempt_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE stripe_events AS s
    SET claimed_until = %(until)s, attempts = s.attempts + 1
    FROM due
    WHERE s.id = due.id
    RETURNING {_ITEM_COLUMNS}
    """
)


async def claim(session: AsyncSession, *, limit: int, now: datetime, until: datetime) -> list[Item]:
    """Claim up to `limit` due rows until `until`, oldest due first; several drainers (one
    per worker process) take different rows."""
    rows = await fetch_all(session, _CLAIM, {"now": now, "until": until, "limit": limit})
    return [Item(**row) for row in rows]


async def done(
    session: AsyncSession, event_id: str, now: datetime, *, status: str = "done"
) -> None:
    """Nothing is left to do (`done`: signaled; `refunded`: see `refunded`)."""
    await session.execute(
        update(StripeEvent)
        .where(col(StripeEvent.id) == event_id)
        .values(status=status, processed_at=now, claimed_until=None, last_error=None)
    )


async def retry_at(session: AsyncSession, event_id: str, at: datetime, error: str) -> None:
    """This attempt failed: release the claim; the row is due again at `at`."""
    await session.execute(
        update(StripeEvent)
        .where(col(StripeEvent.id) == event_id)
        .values(next_attempt_at=at, claimed_until=None, last_error=error[:500])
    )


async def needs_support(session: AsyncSession, event_id: str, error: str) -> None:
    """No automatic way forward: the row stays unprocessed for a person to look at."""
    await session.execute(
        update(StripeEvent)
        .where(col(StripeEvent.id) == event_id)
        .values(status="needs_support", claimed_until=None, last_error=error[:500])
    )


async def start_refund(session: AsyncSession, event_id: str, refund_key: str) -> bool:
    """Put the refund's key on record before Stripe is called. False when another event
    (another delivery of the same payment) holds the key: that row refunds it."""
    result = await session.execute(
        update(StripeEvent)
        .where(
            col(StripeEvent.id) == event_id,
            ~select(StripeEvent.id)  # type: ignore[call-overload]
            .where(col(StripeEvent.refund_key) == refund_key, col(StripeEvent.id) != event_id)
            .exists(),
        )
        .values(status="refunding", refund_key=refund_key)
        .returning(col(StripeEvent.id))
    )
    return result.first() is not None


async def refunded(session: AsyncSession, event_id: str, refund_id: str, now: datetime) -> None:
    await session.execute(
        update(StripeEvent)
        .where(col(StripeEvent.id) == event_id)
        .values(
            status="refunded",
            refund_id=refund_id,
            processed_at=now,
            claimed_until=None,
            last_error=None,
        )
    )


async def subscription_state(session: AsyncSession, subscription_id: str) -> tuple[str, str] | None:
    """The read model's (status, customer id) of a subscription, if it has one."""
    row = (
        await session.execute(
            select(col(Subscription.status), col(Subscription.customer_id)).where(
                col(Subscription.id) == subscription_id
            )
        )
    ).first()
    return (str(row[0]), str(row[1])) if row is not None else None


async def write_event(
    session: AsyncSession,
    *,
    event_id: str,
    subscription_id: str,
    customer_id: str | None,
    event_type: str,
    data: dict[str, Any],
    now: datetime,
) -> list[tuple[str, str, str]]:
    """Add an event to the subscription's timeline (once per id) and queue its webhook
    deliveries, as a projection does; returns the deliveries queued."""
    inserted = await session.execute(
        insert(Event)
        .values(
            id=event_id,
            subscription_id=subscription_id,
            customer_id=customer_id,
            type=event_type,
            data=json.loads(json.dumps(data)),
            actor=None,
            occurred_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(col(Event.id))
    )
    if inserted.first() is None:
        return []
    targets = await outbox.queue_webhooks(session, subscription_id, event_id, event_type, now)
    return [(subscription_id, target, event_id) for target in targets]


async def count_needing_support(session: AsyncSession) -> int:
    query = (
        select(func.count())
        .select_from(StripeEvent)
        .where(col(StripeEvent.processed_at).is_(None), col(StripeEvent.status) == "needs_support")
    )
    return int((await session.execute(query)).scalar_one())


async def get(session: AsyncSession, event_id: str) -> StripeEvent | None:
    return await session.get(StripeEvent, event_id)
