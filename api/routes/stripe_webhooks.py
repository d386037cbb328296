"""Inbound Stripe events: verified, recorded once in the Stripe inbox with the work they ask
for, answered 2xx, and handed to the subscription's workflow (here at once if Temporal
answers; by a worker's inbox drainer otherwise: `activities/stripe_inbox.py`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
import structlog
from fastapi import APIRouter, Request
from sqlmodel import col, select, update
from temporalio.client import Client

from activities.stripe_inbox import ENDED, Signaled, signal_payment
from api.deps import SessionDep, SettingsDep
from api.errors import ApiError
from db.models import Invoice, PaymentAttempt
from db.repositories import stripe_inbox, subscriptions, test_clocks
from db.repositories.stripe_inbox import Item, Work

router = APIRouter(tags=["stripe"])
log = structlog.get_logger()

_BAD_SIGNATURE = (
    "Stripe-Signature is missing or malformed, does not match the body, or is older than "
    "the tolerance window"
)


@router.post("/webhooks/stripe")
async def stripe_webhook(
    request: Request, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    payload = await request.body()
    try:
        stripe.WebhookSignature.verify_header(
            payload,
            request.headers.get("stripe-signature"),
            settings.stripe_webhook_secret,
            tolerance=settings.stripe_webhook_tolerance_seconds,
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as err:
        # The SDK's reason goes to the log; its wording addresses SDK users, not a sender.
        log.warning("stripe.webhook_signature_refused", reason=str(err)[:200])
        raise ApiError(400, "invalid_signature", _BAD_SIGNATURE) from err
    try:
        event = json.loads(payload)
        event_id, event_type = str(event["id"]), str(event["type"])
        obj = event["data"]["object"]
    except (ValueError, KeyError, TypeError) as err:
        raise ApiError(400, "invalid_payload", "Not a Stripe event") from err

    now = datetime.now(UTC)
    if not await stripe_inbox.record(session, event_id, event_type, now):
        await session.rollback()
        return {"received": True, "duplicate": True}

    work: Work | None = None
    try_now = False
    if event_type == "payment_intent.succeeded" and isinstance(obj, dict):
        work = await _record_async_success(session, obj)
    if work is not None:
        state = await stripe_inbox.subscription_state(session, work.subscription_id)
        # A payment for an ended subscription is the drainer's to refund: no signal then.
        try_now = request.app.state.temporal is not None and (
            state is None or state[0] not in ENDED
        )
        lease = timedelta(seconds=settings.stripe_inbox_lease_seconds)
        await stripe_inbox.hand_off(
            session, event_id, work, now, claimed_until=now + lease if try_now else None
        )
    # The event and its work are on record together: from here on Stripe gets a 2xx, and
    # the work is done by this request or, failing that, by a worker's inbox drainer.
    await session.commit()
    signaled = False
    if work is not None and try_now:
        signaled = await _signal_now(session, request.app.state.temporal, event_id, work, settings)
    log.info(
        "stripe.webhook_applied",
        stripe_event_id=event_id,
        type=event_type,
        queued=work is not None and not signaled,
        signaled=signaled,
    )
    return {"received": True, "duplicate": False}


async def _signal_now(
    session: SessionDep, temporal: Client, event_id: str, work: Work, settings: SettingsDep
) -> bool:
    """The first try of the hand-off, under the claim `hand_off` took; never raises."""
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
        # The claim runs out and the drainer takes the row (a repeated signal is dropped).
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


async def _clock_time(session: SessionDep, subscription_id: str) -> datetime | None:
    """A subscription on a test clock records times on that clock, as its invoices are."""
    subscription = await subscriptions.get(session, subscription_id)
    if subscription is None or subscription.test_clock_id is None:
        return None
    clock = await test_clocks.get(session, subscription.test_clock_id)
    return clock.frozen_time if clock is not None else None


async def _record_async_success(session: SessionDep, intent: dict[str, Any]) -> Work | None:
    """A PaymentIntent that succeeded later (3-D Secure): mark its attempt and invoice paid
    (an invoice no longer open, e.g. voided when its subscription ended, stays as it is).

    Only a payment this event is first to report is work for the subscription. One already
    recorded as succeeded (a charge that succeeded at once, as every renewal's does, or an
    earlier event about the same payment) is known to the workflow or handed to it by that
    event: it is neither signaled again nor, should the subscription have ended, refunded."""
    intent_id = str(intent.get("id", ""))
    attempt = (
        await session.exec(
            select(PaymentAttempt)
            .where(PaymentAttempt.stripe_payment_intent_id == intent_id)
            .with_for_update()  # two events about one payment: the second sees the first's
        )
    ).first()
    if attempt is None or attempt.status == "succeeded":
        return None
    now = await _clock_time(session, attempt.subscription_id) or datetime.now(UTC)
    attempt.status = "succeeded"
    attempt.completed_at = now
    session.add(attempt)
    await session.execute(
        update(Invoice)
        .where(col(Invoice.id) == attempt.invoice_id, col(Invoice.status) == "open")
        .values(status="paid", paid_at=now)
    )
    received = intent.get("amount_received")
    return Work(
        subscription_id=attempt.subscription_id,
        invoice_id=attempt.invoice_id,
        payment_intent_id=intent_id,
        amount=received if isinstance(received, int) and received > 0 else attempt.amount,
        currency=attempt.currency,
    )
