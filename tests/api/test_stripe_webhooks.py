"""Inbound Stripe webhooks: verified, applied once, and turned into workflow signals.

The Stripe inbox: an event is recorded with its work in one transaction and answered 2xx
whatever Temporal does; the drainer (`StripeInbox.drain_once`) hands it over later, once
(signal request ids), or refunds a payment whose subscription has ended, once. The session's
worker does not run a drainer of its own, so these tests drain when they choose.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, update
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from activities.stripe_gateway import StripeGateway
from activities.stripe_inbox import Signaled, StripeInbox, signal_payment
from api.app import create_app
from db.engine import get_engine, transaction
from db.models import PaymentAttempt
from db.repositories import stripe_inbox
from db.repositories.stripe_inbox import Item
from devstack.process import free_port
from domain.notifications import DeliveryRetry
from tests.api.billing_support import stripe_client
from tests.conftest import ADMIN_KEY, Stack
from tests.helpers import (
    event_types,
    eventually,
    get_sub,
    invoices,
    make_plan,
    ok,
    stripe_signature,
    subscribe,
)
from workflows.converter import data_converter
from workflows.messages import workflow_id_for

THREE_D_SECURE_CARD = "4000002500003155"


async def _post_event(
    api: httpx.AsyncClient,
    stack: Stack,
    event: dict[str, Any],
    *,
    at: int | None = None,
    secret: str | None = None,
) -> httpx.Response:
    body = json.dumps(event).encode()
    header = stripe_signature(body, secret or stack.settings.stripe_webhook_secret, at)
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
    client = stripe_client(stack)
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

    await eventually(lambda: get_sub(api, sub["id"]), lambda s: s["status"] == "active")
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
    assert missing.json()["error"]["code"] == "invalid_signature"

    body = json.dumps(event).encode()
    good = stripe_signature(body, stack.settings.stripe_webhook_secret)
    for header in ("t=soon,v1=00", good.split(",")[0], "v1=" + good.split("v1=")[1]):
        unreadable = await api.post(
            "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
        )
        assert unreadable.status_code == 400, header
        assert unreadable.json()["error"]["code"] == "invalid_signature"

    not_utf8 = await api.post(
        "/webhooks/stripe", content=b"\xff\xfe", headers={"Stripe-Signature": good}
    )
    assert not_utf8.status_code == 400
    assert not_utf8.json()["error"]["code"] == "invalid_signature"

    garbage = b"{not json"
    header = stripe_signature(garbage, stack.settings.stripe_webhook_secret)
    malformed = await api.post(
        "/webhooks/stripe", content=garbage, headers={"Stripe-Signature": header}
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "invalid_payload"

    # None of the rejected deliveries was recorded: the real one is still fresh.
    accepted = ok(await _post_event(api, stack, event))
    assert accepted["duplicate"] is False


async def test_signature_tolerance_comes_from_settings(
    stack: Stack, temporal_client: Client
) -> None:
    """An event signed a minute ago passes the default 300 s window, not a 30 s one."""
    settings = stack.settings.model_copy(update={"stripe_webhook_tolerance_seconds": 30})
    app = create_app(settings, temporal=temporal_client)
    body = json.dumps(
        {"id": f"evt_{uuid.uuid4().hex}", "type": "customer.updated", "data": {"object": {}}}
    ).encode()
    header = stripe_signature(body, settings.stripe_webhook_secret, int(time.time()) - 60)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        refused = await client.post(
            "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
        )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_signature"
    assert stack.settings.stripe_webhook_tolerance_seconds == 300
    app = create_app(stack.settings, temporal=temporal_client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        accepted = await client.post(
            "/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
        )
    assert ok(accepted) == {"received": True, "duplicate": False}


def _engine(stack: Stack) -> AsyncEngine:
    return get_engine(stack.settings.effective_database_url)


@pytest.fixture
async def api_without_temporal(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The API with a Temporal client whose server is not there (a dead port)."""
    dead = await Client.connect(
        f"127.0.0.1:{free_port()}", data_converter=data_converter, lazy=True
    )
    app = create_app(stack.settings, temporal=dead)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://recur.test",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=120,
        ) as client,
    ):
        yield client


@pytest.fixture
async def drainer(stack: Stack, temporal_client: Client) -> AsyncIterator[StripeInbox]:
    """A drainer as a worker runs it, with a working Temporal client; never started: the
    tests call `drain_once`."""
    inbox = StripeInbox(
        _engine(stack),
        temporal_client,
        StripeGateway.from_settings(stack.settings),
        DeliveryRetry(initial_ms=100, max_ms=500, max_attempts=3),
    )
    yield inbox
    await inbox.stop()


async def _three_d_secure_subscription(
    api: httpx.AsyncClient, client: stripe.StripeClient
) -> tuple[dict[str, Any], str]:
    """An `incomplete` subscription whose first charge waits for 3-D Secure; its intent id."""
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
            "/v1/customers",
            json={"email": f"sca-{uuid.uuid4().hex[:6]}@example.com", "payment_method": card.id},
        ),
        201,
    )
    plan = await make_plan(api, amount=2000, features=["posts"])
    sub = await subscribe(api, customer_id=customer["id"], plan_id=plan["id"])
    assert sub["status"] == "incomplete"
    [invoice] = await invoices(api, sub["id"])
    [attempt] = invoice["attempts"]
    return sub, str(attempt["stripe_payment_intent_id"])


def _authenticated_event(client: stripe.StripeClient, intent_id: str) -> dict[str, Any]:
    """The customer completes 3-D Secure: the `payment_intent.succeeded` Stripe sends."""
    intent = client.v1.payment_intents.retrieve(intent_id)
    client.raw_request(
        "post",
        f"/v1/payment_intents/{intent_id}/_authenticate",
        client_secret=intent.client_secret,
        success="true",
    )
    paid = client.v1.payment_intents.retrieve(intent_id)
    assert paid.status == "succeeded"
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "data": {"object": paid.to_dict()},
    }


async def _signals(temporal: Client, subscription_id: str) -> int:
    history = await temporal.get_workflow_handle(workflow_id_for(subscription_id)).fetch_history()
    return sum(
        1
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and e.workflow_execution_signaled_event_attributes.signal_name == "payment_succeeded"
    )


async def _row(stack: Stack, event_id: str) -> Any:
    async with transaction(_engine(stack)) as session:
        row = await stripe_inbox.get(session, event_id)
    assert row is not None
    return row


async def test_a_signal_that_fails_is_handed_off_later_exactly_once(
    app_client: httpx.AsyncClient,
    api_without_temporal: httpx.AsyncClient,
    stack: Stack,
    temporal_client: Client,
    drainer: StripeInbox,
) -> None:
    client = stripe_client(stack)
    sub, intent_id = await _three_d_secure_subscription(app_client, client)
    event = _authenticated_event(client, intent_id)

    # Temporal is unreachable for this API: the event is recorded, Stripe gets a 2xx.
    first = ok(await _post_event(api_without_temporal, stack, event))
    assert first == {"received": True, "duplicate": False}
    again = ok(await _post_event(api_without_temporal, stack, event))
    assert again == {"received": True, "duplicate": True}
    queued = await _row(stack, event["id"])
    assert (queued.status, queued.processed_at, queued.attempts) == ("pending", None, 1)
    assert queued.last_error
    [invoice] = await invoices(app_client, sub["id"])
    assert invoice["status"] == "paid", "recorded with the event, in the same transaction"
    assert await _signals(temporal_client, sub["id"]) == 0

    # A worker's drainer, whose Temporal answers, hands the event over.
    assert await drainer.drain_once() >= 1
    handed = await _row(stack, event["id"])
    assert handed.status == "done" and handed.processed_at is not None
    await eventually(lambda: get_sub(app_client, sub["id"]), lambda s: s["status"] == "active")

    # Stripe redelivers (to the working API now), a drainer runs again, and a drainer that
    # died between its signal and its update signals again: still one signal.
    redelivered = ok(await _post_event(app_client, stack, event))
    assert redelivered["duplicate"] is True
    await drainer.drain_once()
    item = Item(
        id=event["id"],
        status="pending",
        subscription_id=sub["id"],
        invoice_id=invoice["id"],
        payment_intent_id=intent_id,
        amount=2000,
        currency="usd",
        attempts=2,
        refund_key=None,
    )
    repeated = await signal_payment(temporal_client, item, timedelta(seconds=5))
    assert repeated.outcome is Signaled.SENT
    assert await _signals(temporal_client, sub["id"]) == 1
    [invoice] = await invoices(app_client, sub["id"])
    succeeded = [a for a in invoice["attempts"] if a["status"] == "succeeded"]
    assert [a["stripe_payment_intent_id"] for a in succeeded] == [intent_id], "no second charge"


async def test_b_payment_for_an_ended_subscription_is_refunded_once(
    app_client: httpx.AsyncClient, stack: Stack, temporal_client: Client, drainer: StripeInbox
) -> None:
    api = app_client
    client = stripe_client(stack)
    sub, intent_id = await _three_d_secure_subscription(api, client)
    canceled = ok(
        await api.post(f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": False})
    )
    assert canceled["status"] == "canceled"
    handle = temporal_client.get_workflow_handle(workflow_id_for(sub["id"]))
    await eventually(handle.describe, lambda d: d.status == WorkflowExecutionStatus.COMPLETED)

    # The customer authenticates anyway: money is taken for an ended subscription.
    event = _authenticated_event(client, intent_id)
    first = ok(await _post_event(api, stack, event))
    assert first == {"received": True, "duplicate": False}
    assert ok(await _post_event(api, stack, event))["duplicate"] is True
    # Another event about the same payment (a resend under a new id) refunds nothing more.
    other = {**event, "id": f"evt_{uuid.uuid4().hex}"}
    assert ok(await _post_event(api, stack, other))["duplicate"] is False

    await drainer.drain_once()
    await drainer.drain_once()
    assert ok(await _post_event(api, stack, event))["duplicate"] is True
    await drainer.drain_once()

    refunds = client.v1.refunds.list({"payment_intent": intent_id, "limit": 100})
    assert [(r.amount, r.status) for r in refunds.data] == [(2000, "succeeded")]
    row = await _row(stack, event["id"])
    assert (row.status, row.refund_id) == ("refunded", refunds.data[0].id)
    assert row.refund_key and row.processed_at is not None
    twin = await _row(stack, other["id"])
    assert (twin.status, twin.refund_id) == ("done", None), "the first event's refund"
    assert (await event_types(api, sub["id"])).count("invoice.payment_refunded") == 1
    [invoice] = await invoices(api, sub["id"])
    assert invoice["status"] == "void"
    [attempt] = invoice["attempts"]
    assert attempt["status"] == "succeeded", "the payment is on record"
    assert await _signals(temporal_client, sub["id"]) == 0


async def test_a_payment_the_subscription_already_had_is_not_refunded_after_it_ends(
    app_client: httpx.AsyncClient, stack: Stack, temporal_client: Client, drainer: StripeInbox
) -> None:
    """Stripe reports every payment, the ones charged at once too: a paid first invoice of a
    subscription canceled since (without refund) keeps its money."""
    api = app_client
    customer = ok(
        await api.post(
            "/v1/customers",
            json={
                "email": f"paid-{uuid.uuid4().hex[:6]}@example.com",
                "payment_method": "pm_card_visa",
            },
        ),
        201,
    )
    plan = await make_plan(api, amount=1500)
    sub = await subscribe(api, customer_id=customer["id"], plan_id=plan["id"])
    assert sub["status"] == "active"
    [invoice] = await invoices(api, sub["id"])
    intent_id = invoice["attempts"][0]["stripe_payment_intent_id"]
    ok(await api.post(f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": False}))
    client = stripe_client(stack)
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "data": {"object": client.v1.payment_intents.retrieve(intent_id).to_dict()},
    }
    assert ok(await _post_event(api, stack, event))["duplicate"] is False
    await drainer.drain_once()
    row = await _row(stack, event["id"])
    assert (row.status, row.refund_key) == ("done", None)
    assert row.processed_at is not None
    assert client.v1.refunds.list({"payment_intent": intent_id}).data == []


async def test_a_workflow_that_stays_missing_is_flagged_for_support(
    app_client: httpx.AsyncClient, stack: Stack, temporal_client: Client, drainer: StripeInbox
) -> None:
    """The workflow was terminated by hand while the subscription had not ended: the signal
    is tried `max_attempts` times (3 here), then the event waits for a person."""
    api = app_client
    client = stripe_client(stack)
    sub, intent_id = await _three_d_secure_subscription(api, client)
    await temporal_client.get_workflow_handle(workflow_id_for(sub["id"])).terminate("by hand")
    event = _authenticated_event(client, intent_id)

    assert ok(await _post_event(api, stack, event))["duplicate"] is False  # try 1: not found
    row = await _row(stack, event["id"])
    assert (row.status, row.attempts, row.processed_at) == ("pending", 1, None)
    later = datetime.now(UTC) + timedelta(hours=1)  # past any backoff
    await drainer.drain_once(now=later)
    assert (await _row(stack, event["id"])).status == "pending"
    await drainer.drain_once(now=later + timedelta(hours=1))
    row = await _row(stack, event["id"])
    assert (row.status, row.attempts, row.processed_at) == ("needs_support", 3, None)
    assert row.last_error and "not found" in row.last_error
    async with transaction(_engine(stack)) as session:
        assert await stripe_inbox.count_needing_support(session) >= 1
    assert (await event_types(api, sub["id"])).count("invoice.payment_unresolved") == 1
    await drainer.drain_once(now=later + timedelta(days=1))  # a person's now: not retried
    assert (await _row(stack, event["id"])).attempts == 3
    assert client.v1.refunds.list({"payment_intent": intent_id}).data == []


async def test_a_refund_stripe_refuses_is_flagged_for_support(
    app_client: httpx.AsyncClient, stack: Stack, temporal_client: Client, drainer: StripeInbox
) -> None:
    """A payment of an ended subscription under a PaymentIntent this Stripe account does not
    know (the attempt row says so): the refund is refused, and the event waits for a person."""
    api = app_client
    client = stripe_client(stack)
    sub, intent_id = await _three_d_secure_subscription(api, client)
    ok(await api.post(f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": False}))
    unknown = f"pi_unknown_{uuid.uuid4().hex[:12]}"
    async with transaction(_engine(stack)) as session:
        await session.execute(
            update(PaymentAttempt)
            .where(col(PaymentAttempt.stripe_payment_intent_id) == intent_id)
            .values(stripe_payment_intent_id=unknown)
        )
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": unknown, "status": "succeeded", "amount_received": 2000}},
    }

    assert ok(await _post_event(api, stack, event))["duplicate"] is False
    await drainer.drain_once()
    row = await _row(stack, event["id"])
    assert (row.status, row.processed_at) == ("needs_support", None)
    assert row.refund_key and row.last_error and "refund refused" in row.last_error
    assert (await event_types(api, sub["id"])).count("invoice.payment_unresolved") == 1


async def test_the_drainer_loop_hands_off_what_the_api_could_not(
    app_client: httpx.AsyncClient,
    api_without_temporal: httpx.AsyncClient,
    stack: Stack,
    temporal_client: Client,
) -> None:
    """As a worker runs it (`StripeInbox.from_settings`, started beside the worker)."""
    client = stripe_client(stack)
    sub, intent_id = await _three_d_secure_subscription(app_client, client)
    event = _authenticated_event(client, intent_id)
    ok(await _post_event(api_without_temporal, stack, event))
    inbox = StripeInbox.from_settings(
        _engine(stack),
        temporal_client,
        stack.settings.model_copy(update={"stripe_inbox_poll_seconds": 0.05}),
    )
    inbox.start()
    try:
        await eventually(lambda: _row(stack, event["id"]), lambda row: row.status == "done")
    finally:
        await inbox.stop()
    assert await _signals(temporal_client, sub["id"]) == 1
