"""Inbound Stripe events: verified, recorded once in the Stripe inbox with the work they ask
for, answered 2xx, and handed to the subscription's workflow (`api.services.stripe_events`)."""

from __future__ import annotations

import json
from typing import Any

import stripe
import structlog
from fastapi import APIRouter, Request

from api.deps import SessionDep, SettingsDep
from api.services import stripe_events
from domain import errors

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
        raise errors.INVALID_SIGNATURE(_BAD_SIGNATURE) from err
    try:
        event = json.loads(payload)
        event_id, event_type = str(event["id"]), str(event["type"])
        obj = event["data"]["object"]
    except (ValueError, KeyError, TypeError) as err:
        raise errors.INVALID_PAYLOAD("Not a Stripe event") from err

    received = await stripe_events.receive(
        session,
        event_id=event_id,
        event_type=event_type,
        obj=obj,
        temporal_connected=request.app.state.temporal is not None,
        settings=settings,
    )
    if received.duplicate:
        return {"received": True, "duplicate": True}
    work, signaled = received.work, False
    if work is not None and received.try_now:
        signaled = await stripe_events.signal_now(
            session, request.app.state.temporal, event_id, work, settings
        )
    log.info(
        "stripe.webhook_applied",
        stripe_event_id=event_id,
        type=event_type,
        queued=work is not None and not signaled,
        signaled=signaled,
    )
    return {"received": True, "duplicate": False}
