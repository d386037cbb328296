"""What the API says agrees with itself: times on a test clock are the clock's, every time is
written in one RFC 3339 form (`Z`), lines name plans by name, and a credit note is no payment.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import stripe

from activities.notifications import webhook_body
from db.models import Event
from tests.api.billing_support import at, call, events_of, prorated, start_active, timeline
from tests.conftest import Stack
from tests.helpers import (
    advance,
    invoices,
    make_clock,
    make_plan,
    ok,
    stripe_signature,
    subscribe,
    ts,
)

# An RFC 3339 date-time anywhere in a JSON document, with whatever offset it carries.
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _times(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if TIME.match(value) else []
    if isinstance(value, dict):
        return [t for item in value.values() for t in _times(item)]
    if isinstance(value, list):
        return [t for item in value for t in _times(item)]
    return []


async def test_times_written_by_activities_are_clock_times(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=1200)
    start, renewal = at(2028, 1, 1), at(2028, 2, 1)
    _, clock, sub = await start_active(api, plan, start)
    await advance(api, clock["id"], at(2028, 2, 3))

    first, second = await invoices(api, sub["id"])
    for invoice, moment in ((first, start), (second, renewal)):
        assert ts(invoice["created_at"]) == moment
        assert invoice["paid_at"] is not None and ts(invoice["paid_at"]) == moment
        [attempt] = invoice["attempts"]
        assert ts(attempt["created_at"]) == moment
        assert ts(attempt["completed_at"]) == moment


async def test_event_data_and_webhook_bodies_use_z(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=1200)
    _, clock, sub = await start_active(api, plan, at(2028, 3, 1))
    await advance(api, clock["id"], at(2028, 4, 2))

    events = await timeline(api, sub["id"])
    (renewed,) = [e for e in events if e["type"] == "subscription.renewed"]
    assert renewed["data"]["period_end"] == "2028-05-01T00:00:00Z"
    found = _times(events)
    assert len(found) > len(events), "each occurred_at, and times in data"
    assert [t for t in found if not t.endswith("Z")] == []

    # A webhook body for the stored event (its data as the workflow wrote it).
    event = Event(
        id=renewed["id"],
        type=renewed["type"],
        subscription_id=sub["id"],
        customer_id=sub["customer_id"],
        data={"period_end": "2028-05-01T00:00:00+00:00", "nested": ["2028-05-01T00:00:00+00:00"]},
        actor=None,
        occurred_at=ts(renewed["occurred_at"]),
    )
    body = json.loads(webhook_body(event))
    assert body["data"]["period_end"] == "2028-05-01T00:00:00Z"
    assert body["data"]["nested"] == ["2028-05-01T00:00:00Z"]
    assert [t for t in _times(body) if not t.endswith("Z")] == []


async def test_proration_lines_name_plans_by_name(app_client: httpx.AsyncClient) -> None:
    api = app_client
    basic = await make_plan(api, amount=1000, name="Basic Monthly")
    pro = await make_plan(api, amount=2500, name="Pro Monthly")
    yearly = await make_plan(api, amount=20000, name="Pro Yearly", interval="year")
    _, clock, sub = await start_active(api, basic, at(2028, 5, 1))
    await advance(api, clock["id"], at(2028, 5, 11))
    ok(await call(api, sub["id"], "change_plan", {"plan_id": pro["id"]}))
    await advance(api, clock["id"], at(2028, 5, 21))
    ok(await call(api, sub["id"], "change_plan", {"plan_id": yearly["id"]}))

    lines = [
        line["description"]
        for invoice in await invoices(api, sub["id"])
        for line in invoice["lines"]
        if line["kind"] == "proration"
    ]
    assert lines == [
        "Unused time on Basic Monthly, May 11 \u2013 Jun 1 2028",
        "Remaining time on Pro Monthly, May 11 \u2013 Jun 1 2028",
        "Unused time on Pro Monthly, May 21 \u2013 Jun 1 2028",
    ]
    for plan in (basic, pro, yearly):
        assert not [line for line in lines if plan["id"] in line]


async def test_credit_note_is_not_paid(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=3000)
    _, clock, sub = await start_active(api, plan, at(2028, 7, 1))
    moment = at(2028, 7, 11)
    await advance(api, clock["id"], moment)
    body = {"at_period_end": False, "refund": "prorated"}
    ok(await call(api, sub["id"], "cancel", body))

    first, note = await invoices(api, sub["id"])
    assert (first["type"], first["status"]) == ("invoice", "paid")
    assert note["billing_reason"] == "subscription_cancel_refund"
    assert note["total"] == -prorated(3000, 21 * 86_400, 31 * 86_400)
    assert (note["type"], note["status"], note["paid_at"]) == ("credit_note", "credited", None)
    assert ts(note["created_at"]) == moment
    (refunded,) = await events_of(api, sub["id"], "invoice.refunded")
    assert refunded["data"]["credit_note_id"] == note["id"]


async def test_payment_reported_by_stripe_later_is_dated_on_the_clock(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    """3-D Secure on a test clock: the webhook reporting success arrives in wall time, the
    attempt and the invoice are dated with the clock's time."""
    api = app_client
    base = stack.settings.effective_stripe_api_base
    assert base is not None
    client = stripe.StripeClient(stack.settings.stripe_api_key, base_addresses={"api": base})
    card = client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "4000002500003155", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    body = {"email": f"sca-{uuid.uuid4().hex[:8]}@example.com", "payment_method": card.id}
    customer = ok(await api.post("/v1/customers", json=body), 201)
    plan = await make_plan(api, amount=2000)
    start = at(2028, 9, 1)
    clock = await make_clock(api, start)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    assert sub["status"] == "incomplete"
    [invoice] = await invoices(api, sub["id"])
    intent_id = invoice["attempts"][0]["stripe_payment_intent_id"]
    intent = client.v1.payment_intents.retrieve(intent_id)
    client.raw_request(
        "post",
        f"/v1/payment_intents/{intent_id}/_authenticate",
        client_secret=intent.client_secret,
        success="true",
    )
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "data": {"object": client.v1.payment_intents.retrieve(intent_id).to_dict()},
    }
    raw = json.dumps(event).encode()
    header = stripe_signature(raw, stack.settings.stripe_webhook_secret)
    ok(
        await api.post(
            "/webhooks/stripe",
            content=raw,
            headers={"Stripe-Signature": header, "content-type": "application/json"},
        )
    )

    [invoice] = await invoices(api, sub["id"])
    assert invoice["status"] == "paid"
    assert ts(invoice["paid_at"]) == start
    assert [ts(a["completed_at"]) for a in invoice["attempts"]] == [start]
