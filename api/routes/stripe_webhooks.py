"""Inbound Stripe events: verified, deduplicated by event id, turned into workflow signals."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Request
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select, update

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.errors import ApiError
from api.stripe_signature import SignatureError, verify
from db.models import Invoice, PaymentAttempt, StripeEvent
from workflows.messages import PaymentSucceeded, workflow_id_for
from workflows.subscription import SubscriptionWorkflow

router = APIRouter(tags=["stripe"])
log = structlog.get_logger()


@router.post("/webhooks/stripe")
async def stripe_webhook(
    request: Request, session: SessionDep, temporal: TemporalDep, settings: SettingsDep
) -> dict[str, Any]:
    payload = await request.body()
    try:
        verify(
            payload,
            request.headers.get("stripe-signature"),
            settings.stripe_webhook_secret,
            int(time.time()),
        )
    except SignatureError as err:
        raise ApiError(400, "invalid_signature", str(err)) from err
    try:
        event = json.loads(payload)
        event_id, event_type = str(event["id"]), str(event["type"])
        obj = event["data"]["object"]
    except (ValueError, KeyError, TypeError) as err:
        raise ApiError(400, "invalid_payload", "Not a Stripe event") from err

    fresh = await session.execute(
        insert(StripeEvent)
        .values(id=event_id, type=event_type, received_at=datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(col(StripeEvent.id))
    )
    if fresh.first() is None:
        await session.rollback()
        return {"received": True, "duplicate": True}

    signal: tuple[str, PaymentSucceeded] | None = None
    if event_type == "payment_intent.succeeded" and isinstance(obj, dict):
        signal = await _record_async_success(session, obj)
    await session.commit()
    if signal is not None:
        subscription_id, message = signal
        handle = temporal.get_workflow_handle(workflow_id_for(subscription_id))
        await handle.signal(SubscriptionWorkflow.payment_succeeded, message)
    log.info(
        "stripe.webhook_applied",
        stripe_event_id=event_id,
        type=event_type,
        signaled=signal is not None,
    )
    return {"received": True, "duplicate": False}


async def _record_async_success(
    session: SessionDep, intent: dict[str, Any]
) -> tuple[str, PaymentSucceeded] | None:
    """A PaymentIntent that succeeded later (3-D Secure): mark its attempt and invoice paid."""
    intent_id = str(intent.get("id", ""))
    attempt = (
        await session.exec(
            select(PaymentAttempt).where(PaymentAttempt.stripe_payment_intent_id == intent_id)
        )
    ).first()
    if attempt is None:
        return None
    now = datetime.now(UTC)
    if attempt.status != "succeeded":
        attempt.status = "succeeded"
        attempt.completed_at = now
        session.add(attempt)
        await session.execute(
            update(Invoice)
            .where(col(Invoice.id) == attempt.invoice_id, col(Invoice.status) == "open")
            .values(status="paid", paid_at=now)
        )
    return attempt.subscription_id, PaymentSucceeded(
        invoice_id=attempt.invoice_id, payment_intent_id=intent_id
    )
