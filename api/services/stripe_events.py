"""Inbound Stripe events after their signature is checked: recorded once in the Stripe inbox
with the work they ask for, then handed to the subscription's workflow (here at once if
Temporal answers; by a worker's inbox drainer otherwise: `activities/stripe_inbox.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from activities.stripe_inbox import Signaled, signal_payment
from config import Settings
from db.repositories import charges, stripe_inbox
from db.repositories.stripe_inbox import Item, Work
from domain.status import TERMINAL

log = structlog.get_logger()


@dataclass(frozen=True)
class Received:
    duplicate: bool  # recorded before: nothing was done
    work: Work | None = None  # what the event asks of its subscription
    try_now: bool = False  # the work is claimed for this request's first try


async def receive(
    session: AsyncSession,
    *,
    event_id: str,
    event_type: str,
    obj: Any,
    temporal_connected: bool,
    settings: Settings,
) -> Received:
    """Record the event, and the work it asks for, once. Commits the caller's unit of work:
    the event and its work are on record together before Stripe gets its 2xx, and the work
    is then done by this request or, failing that, by a worker's inbox drainer."""
    now = datetime.now(UTC)
    if not await stripe_inbox.record(session, event_id, event_type, now):
        return Received(duplicate=True)
    work: Work | None = None
    try_now = False
    if event_type == "payment_intent.succeeded" and isinstance(obj, dict):
        work = await _late_success(session, obj)
    if work is not None:
        state = await stripe_inbox.subscription_state(session, work.subscription_id)
        # A payment for an ended subscription is the drainer's to refund: no signal then.
        try_now = temporal_connected and (state is None or state[0] not in TERMINAL)
        lease = timedelta(seconds=settings.stripe_inbox_lease_seconds)
        await stripe_inbox.hand_off(
            session, event_id, work, now, claimed_until=now + lease if try_now else None
        )
    await session.commit()
    return Received(duplicate=False, work=work, try_now=try_now)


async def signal_now(
    session: AsyncSession, temporal: Client, event_id: str, work: Work, settings: Settings
) -> bool:
    """The first try of the hand-off, under the claim `receive` took; never raises. Commits
    what it records on the inbox row at once (the row is released for the drainer); should
    that fail, the claim runs out and the drainer takes the row (a repeated signal is
    dropped)."""
    item = Item(
        id=event_id,
        status="pending",
        subscription_id=work.subscription_id,
        invoice_id=work.invoice_id,
        payment_intent_id=work.payment_intent_id,
        amount=work.amount,
        currency=work.currency,
        attempts=1,
        refund_key=None,
    )
    timeout = timedelta(seconds=settings.stripe_signal_timeout_seconds)
    result = await signal_payment(temporal, item, timeout)
    try:
        now = datetime.now(UTC)
        if result.outcome is Signaled.SENT:
            await stripe_inbox.done(session, event_id, now)
        else:
            # Released at once: the drainer decides (retry, refund, support) from here.
            await stripe_inbox.retry_at(session, event_id, now, result.error or "")
        await session.commit()
    except Exception:
        await session.rollback()
        log.exception("stripe.webhook_handoff_update_failed", stripe_event_id=event_id)
    if result.outcome is not Signaled.SENT:
        log.warning(
            "stripe.webhook_signal_deferred",
            stripe_event_id=event_id,
            subscription_id=work.subscription_id,
            outcome=result.outcome.value,
            error=result.error,
        )
    return result.outcome is Signaled.SENT


async def _late_success(session: AsyncSession, intent: dict[str, Any]) -> Work | None:
    """A PaymentIntent that succeeded later (3-D Secure): its attempt and invoice are settled
    as paid (`charges.settle_attempt`), at the subscription's test-clock time if it has one.

    Only a payment this event is first to report is work for the subscription. One already
    recorded as succeeded (a charge that succeeded at once, as every renewal's does, or an
    earlier event about the same payment) is known to the workflow or handed to it by that
    event: it is neither signaled again nor, should the subscription have ended, refunded."""
    intent_id = str(intent.get("id", ""))
    found = await charges.attempt_of_intent(session, intent_id)
    if found is None or found.attempt.status == "succeeded":
        return None
    attempt = await charges.settle_attempt(
        session,
        key=found.attempt.idempotency_key,
        invoice_id=found.attempt.invoice_id,
        result=charges.Settlement(status="succeeded"),
        now=found.clock_time or datetime.now(UTC),
        late=True,
    )
    received = intent.get("amount_received")
    return Work(
        subscription_id=found.subscription_id,
        invoice_id=attempt.invoice_id,
        payment_intent_id=intent_id,
        amount=received if isinstance(received, int) and received > 0 else attempt.amount,
        currency=attempt.currency,
    )
