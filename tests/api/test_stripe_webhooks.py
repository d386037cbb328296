"""Inbound Stripe webhooks: verified, applied once, and turned into workflow signals."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import stripe

from api.stripe_signature import sign
from tests.conftest import Stack
from tests.helpers import get_sub, invoices, make_plan, ok, subscribe

THREE_D_SECURE_CARD = "4000002500003155"


def _stripe(stack: Stack) -> stripe.StripeClient:
    base = stack.settings.effective_stripe_api_base
    assert base is not None
    return stripe.StripeClient("sk_test_recur_tests", base_addresses={"api": base})


async def _post_event(
    api: httpx.AsyncClient,
    stack: Stack,
    event: dict[str, Any],
    *,
    at: int | None = None,
    secret: str | None = None,
) -> httpx.Response:
    body = json.dumps(event).encode()
    header = sign(body, secret or stack.settings.stripe_webhook_secret, at or int(time.time()))
    return await api.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": header, "content-type": "application/json"},
    )


async def test_async_payment_success_applied_once(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    """3-D Secure: the charge needs authentication, Stripe reports success later by webhook."""
    api = app_client
    client = _stripe(stack)
    card = client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {
                "number": THREE_D_SECURE_CARD,
                "exp_month": 12,
                "exp_year": 2034,
                "cvc": "123",
            },
        }
    )
    customer = ok(
        await api.post(
            "/v1/customers", json={"email": "sca@example.com", "payment_method": card.id}
        ),
        201,
    )
    plan = await make_plan(api, amount=2000, features=["posts"])
    sub = await subscribe(api, customer_id=customer["id"], plan_id=plan["id"])
    assert sub["status"] == "incomplete"
    [invoice] = await invoices(api, sub["id"])
    [attempt] = invoice["attempts"]
    assert attempt["failure_code"] == "authentication_required"
    intent_id = attempt["stripe_payment_intent_id"]

    intent = client.v1.payment_intents.retrieve(intent_id)
    client.raw_request(
        "post",
        f"/v1/payment_intents/{intent_id}/_authenticate",
        client_secret=intent.client_secret,
        success="true",
    )
    paid_intent = client.v1.payment_intents.retrieve(intent_id)
    assert paid_intent.status == "succeeded"
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "data": {"object": paid_intent.to_dict()},
    }

    first = ok(await _post_event(api, stack, event))
    second = ok(await _post_event(api, stack, event))
    assert first == {"received": True, "duplicate": False}
    assert second == {"received": True, "duplicate": True}

    for _ in range(100):
        sub = await get_sub(api, sub["id"])
        if sub["status"] == "active":
            break
        await asyncio.sleep(0.1)
    assert sub["status"] == "active"
    [invoice] = await invoices(api, sub["id"])
    assert invoice["status"] == "paid"
    succeeded = [a for a in invoice["attempts"] if a["status"] == "succeeded"]
    assert [a["stripe_payment_intent_id"] for a in succeeded] == [intent_id], "no second charge"


async def test_bad_signatures_and_bodies_are_rejected(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    api = app_client
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_x"}},
    }

    wrong_secret = await _post_event(api, stack, event, secret="whsec_not_ours")
    assert wrong_secret.status_code == 400
    assert wrong_secret.json()["error"]["code"] == "invalid_signature"

    stale = await _post_event(api, stack, event, at=int(time.time()) - 3600)
    assert stale.status_code == 400
    assert stale.json()["error"]["code"] == "invalid_signature"

    missing = await api.post("/webhooks/stripe", content=json.dumps(event).encode())
    assert missing.status_code == 400

    garbage = b"{not json"
    header = sign(garbage, stack.settings.stripe_webhook_secret, int(time.time()))
    malformed = await api.post(
        "/webhooks/stripe", content=garbage, headers={"Stripe-Signature": header}
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "invalid_payload"

    # None of the rejected deliveries was recorded: the real one is still fresh.
    accepted = ok(await _post_event(api, stack, event))
    assert accepted["duplicate"] is False
