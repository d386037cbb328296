"""Discounts on invoices through the real stack, on test clocks, with worked numbers: each
duration across its end, amounts off above the subtotal, an upgrade under a percent
discount, a discount replaced and removed mid-period, and their timeline events.

Expected amounts are worked out here by hand (halves up), not with `domain/`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx

from tests.api.billing_support import (
    at,
    call,
    events_of,
    line_tuples,
    prorated,
    rejected,
    seconds,
)
from tests.helpers import advance, get_sub, invoices, make_clock, make_customer, make_plan, ok, ts
from tests.webhook_receiver import Receiver


async def coupon(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    payload = {"name": f"Deal {uuid.uuid4().hex[:6]}", **body}
    return ok(await api.post("/v1/coupons", json=payload), 201)  # type: ignore[no-any-return]


async def start(
    api: httpx.AsyncClient, plan: dict[str, Any], when: datetime, **body: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(clock, subscription) of a new subscription on a test clock at `when`."""
    customer = await make_customer(api)
    clock = await make_clock(api, when)
    sub = ok(
        await api.post(
            "/v1/subscriptions",
            json={
                "customer_id": customer["id"],
                "plan_id": plan["id"],
                "test_clock_id": clock["id"],
                **body,
            },
        ),
        201,
    )
    return clock, sub


async def billed(api: httpx.AsyncClient, sub_id: str) -> list[dict[str, Any]]:
    """The subscription's invoices, oldest first."""
    return sorted(await invoices(api, sub_id), key=lambda i: (i["created_at"], i["id"]))


def kinds_and_amounts(invoice: dict[str, Any]) -> list[tuple[str, int]]:
    return [(line["kind"], line["amount"]) for line in invoice["lines"]]


async def test_repeating_percent_on_a_monthly_plan_across_its_end(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1999)
    deal = await coupon(api, percent_off=33.33, duration="repeating", duration_in_months=2)
    clock, sub = await start(api, plan, at(2031, 1, 31), coupon_id=deal["id"])
    # Two calendar months from Jan 31 end on the last day of March (clamped).
    assert sub["discount"] == {
        "coupon_id": deal["id"],
        "promotion_code_id": None,
        "start": "2031-01-31T00:00:00Z",
        "end": "2031-03-31T00:00:00Z",
    }
    # 33.33% of 1999 = 666.2667 -> 666 off: 1333 for Jan 31 and Feb 28; Mar 31 is full.
    await advance(api, clock["id"], at(2031, 4, 1))
    got = await billed(api, sub["id"])
    assert [(ts(i["period_start"]), i["total"]) for i in got] == [
        (at(2031, 1, 31), 1333),
        (at(2031, 2, 28), 1333),
        (at(2031, 3, 31), 1999),
    ]
    assert kinds_and_amounts(got[0]) == [("subscription", 1999), ("discount", -666)]
    assert got[0]["lines"][1]["description"] == f"{deal['name']} (33.33% off)"
    assert all(i["status"] == "paid" for i in got)
    assert (await get_sub(api, sub["id"]))["discount"] is None
    ended = await events_of(api, sub["id"], "subscription.discount_ended")
    assert len(ended) == 1
    assert ts(ended[0]["occurred_at"]) == at(2031, 3, 31)
    assert ended[0]["data"]["coupon_id"] == deal["id"]
    applied = await events_of(api, sub["id"], "subscription.discount_applied")
    assert [e["data"]["coupon_id"] for e in applied] == [deal["id"]]


async def test_forever_amount_off_every_invoice(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=1000)
    deal = await coupon(api, amount_off=300, currency="usd", duration="forever")
    clock, sub = await start(api, plan, at(2031, 5, 1), coupon_id=deal["id"])
    assert sub["discount"]["end"] is None
    await advance(api, clock["id"], at(2031, 8, 1))
    got = await billed(api, sub["id"])
    assert [i["total"] for i in got] == [700, 700, 700, 700]
    assert all(kinds_and_amounts(i) == [("subscription", 1000), ("discount", -300)] for i in got)
    assert [a["amount"] for i in got for a in i["attempts"]] == [700, 700, 700, 700]
    assert (await get_sub(api, sub["id"]))["discount"]["coupon_id"] == deal["id"]


async def test_once_on_a_yearly_plan(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=12_000, interval="year")
    deal = await coupon(api, percent_off=12.5, duration="once")
    clock, sub = await start(api, plan, at(2031, 2, 1), coupon_id=deal["id"])
    # 12.5% of 12000 = 1500 off the first year; used up, the subscription holds nothing.
    assert sub["discount"] is None
    await advance(api, clock["id"], at(2032, 2, 1))
    got = await billed(api, sub["id"])
    assert [i["total"] for i in got] == [10_500, 12_000]
    assert kinds_and_amounts(got[0]) == [("subscription", 12_000), ("discount", -1500)]
    ended = await events_of(api, sub["id"], "subscription.discount_ended")
    assert [e["data"]["invoice_id"] for e in ended] == [got[0]["id"]]


async def test_once_on_a_trial_applies_to_the_first_paid_invoice(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1500, trial_days=7)
    deal = await coupon(api, percent_off=100, duration="once")
    clock, sub = await start(api, plan, at(2031, 6, 1), coupon_id=deal["id"])
    assert sub["status"] == "trialing"
    assert sub["discount"]["coupon_id"] == deal["id"]
    await advance(api, clock["id"], at(2031, 7, 8))
    got = await billed(api, sub["id"])
    # The trial-end invoice is free (a 0 total, paid with no Stripe payment); the next full.
    assert [(i["total"], i["status"]) for i in got] == [(0, "paid"), (1500, "paid")]
    assert got[0]["attempts"][0]["stripe_payment_intent_id"] is None
    assert (await get_sub(api, sub["id"]))["status"] == "active"


async def test_amount_off_above_the_subtotal_makes_a_zero_invoice(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    plan = await make_plan(api, amount=500)
    deal = await coupon(api, amount_off=800, currency="usd", duration="forever")
    _, sub = await start(api, plan, at(2031, 9, 1), coupon_id=deal["id"])
    assert sub["status"] == "active"
    (invoice,) = await billed(api, sub["id"])
    assert kinds_and_amounts(invoice) == [("subscription", 500), ("discount", -500)]
    assert (invoice["total"], invoice["status"]) == (0, "paid")
    assert invoice["attempts"][0]["stripe_payment_intent_id"] is None


async def test_upgrade_mid_period_under_a_percent_discount(app_client: httpx.AsyncClient) -> None:
    api = app_client
    basic = await make_plan(api, amount=1000)
    pro = await make_plan(api, amount=2000)
    deal = await coupon(api, percent_off=25, duration="forever")
    period_start, period_end = at(2031, 1, 1), at(2031, 2, 1)
    clock, sub = await start(api, basic, period_start, coupon_id=deal["id"])
    moment = at(2031, 1, 16)
    await advance(api, clock["id"], moment)
    period, remaining = seconds(period_start, period_end), seconds(moment, period_end)
    # Prorated on the discounted totals: 750 and 1500 for the 16 of 31 days left.
    credit, debit = -prorated(750, remaining, period), prorated(1500, remaining, period)
    assert (credit, debit) == (-387, 774)
    result = ok(await call(api, sub["id"], "change_plan", {"plan_id": pro["id"]}))
    invoice = result["invoice"]
    assert line_tuples(invoice) == [
        ("proration", credit, moment, period_end),
        ("proration", debit, moment, period_end),
    ]
    assert invoice["total"] == 387  # proration only: no discount line
    await advance(api, clock["id"], period_end)
    renewal = (await billed(api, sub["id"]))[-1]
    assert kinds_and_amounts(renewal) == [("subscription", 2000), ("discount", -500)]


async def test_a_discount_replaced_then_removed_mid_period(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=1000)
    first = await coupon(api, percent_off=10, duration="forever")
    second = await coupon(api, amount_off=300, currency="usd", duration="forever")
    clock, sub = await start(api, plan, at(2031, 3, 1), coupon_id=first["id"])
    await advance(api, clock["id"], at(2031, 3, 10))
    replaced = ok(await call(api, sub["id"], "discount", {"coupon_id": second["id"]}))
    assert replaced["discount"]["coupon_id"] == second["id"]
    assert replaced["discount"]["start"] == "2031-03-10T00:00:00Z"
    # Replacing moves no money now; the next invoice follows the new terms.
    assert len(await billed(api, sub["id"])) == 1
    await advance(api, clock["id"], at(2031, 4, 1))
    await advance(api, clock["id"], at(2031, 4, 15))
    removed = await api.delete(f"/v1/subscriptions/{sub['id']}/discount")
    assert ok(removed)["discount"] is None
    rejected(await api.delete(f"/v1/subscriptions/{sub['id']}/discount"), 409, "no_discount")
    await advance(api, clock["id"], at(2031, 5, 1))
    got = await billed(api, sub["id"])
    assert [i["total"] for i in got] == [900, 700, 1000]
    assert [
        (e["type"], e["data"]["coupon_id"], e["data"].get("replaced"))
        for e in await events_of(api, sub["id"], "subscription.discount_applied")
        + await events_of(api, sub["id"], "subscription.discount_removed")
    ] == [
        ("subscription.discount_applied", first["id"], None),
        ("subscription.discount_applied", second["id"], None),
        ("subscription.discount_removed", first["id"], True),
        ("subscription.discount_removed", second["id"], None),
    ]
    assert ok(await api.get(f"/v1/coupons/{second['id']}"))["times_redeemed"] == 1


async def test_redeeming_later_is_refused_like_at_creation(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=1000)
    _, sub = await start(api, plan, at(2031, 10, 1))
    rejected(
        await call(api, sub["id"], "discount", {"coupon_id": "coupon_nope"}),
        404,
        "coupon_not_found",
    )
    euros = await coupon(api, amount_off=100, currency="eur", duration="once")
    rejected(
        await call(api, sub["id"], "discount", {"coupon_id": euros["id"]}),
        422,
        "coupon_not_applicable",
    )
    capped = await coupon(api, percent_off=5, duration="once", max_redemptions=1)
    ok(await call(api, sub["id"], "discount", {"coupon_id": capped["id"]}))
    rejected(
        await call(api, sub["id"], "discount", {"coupon_id": capped["id"]}),
        409,
        "coupon_exhausted",
    )
    rejected(await call(api, sub["id"], "discount", {}), 422, "validation_error")
    ok(await call(api, sub["id"], "cancel", {"at_period_end": False}))
    later = await coupon(api, percent_off=5, duration="once")
    rejected(
        await call(api, sub["id"], "discount", {"coupon_id": later["id"]}),
        409,
        "subscription_canceled",
    )
    assert ok(await api.get(f"/v1/coupons/{later['id']}"))["times_redeemed"] == 0
    assert ok(await api.get(f"/v1/coupons/{euros['id']}"))["times_redeemed"] == 0


async def test_a_discount_sent_again_with_its_key_counts_once(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1000)
    _, sub = await start(api, plan, at(2031, 11, 1))
    deal = await coupon(api, percent_off=20, duration="forever", max_redemptions=5)
    headers = {"Idempotency-Key": f"discount-{uuid.uuid4().hex}"}
    body = {"coupon_id": deal["id"]}
    first = await call(api, sub["id"], "discount", body, headers=headers)
    again = await call(api, sub["id"], "discount", body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert ok(await api.get(f"/v1/coupons/{deal['id']}"))["times_redeemed"] == 1
    assert len(await events_of(api, sub["id"], "subscription.discount_applied")) == 1


async def test_discount_events_reach_webhook_endpoints(app_client: httpx.AsyncClient) -> None:
    api = app_client
    receiver = await Receiver().start()
    types = [f"subscription.discount_{what}" for what in ("applied", "removed", "ended")]
    endpoint = ok(
        await api.post("/v1/webhook_endpoints", json={"url": receiver.url, "events": types}), 201
    )
    receiver.secret = endpoint["secret"]
    try:
        plan = await make_plan(api, amount=1000)
        once = await coupon(api, percent_off=50, duration="once")
        forever = await coupon(api, amount_off=100, currency="usd", duration="forever")
        # A once discount is applied and used up by the first invoice; a forever one replaces
        # nothing (none is held), then is removed.
        _, sub = await start(api, plan, at(2031, 12, 1), coupon_id=once["id"])
        ok(await call(api, sub["id"], "discount", {"coupon_id": forever["id"]}))
        ok(await api.delete(f"/v1/subscriptions/{sub['id']}/discount"))
        expected = [
            ("subscription.discount_applied", once["id"]),
            ("subscription.discount_ended", once["id"]),
            ("subscription.discount_applied", forever["id"]),
            ("subscription.discount_removed", forever["id"]),
        ]

        def seen() -> list[tuple[str, str]]:
            return [
                (d["type"], d["data"]["coupon_id"]) for d in receiver.for_subscription(sub["id"])
            ]

        await receiver.wait_for(lambda: seen() == expected)
        assert receiver.bad_signatures == 0
    finally:
        ok(await api.delete(f"/v1/webhook_endpoints/{endpoint['id']}"))
        await receiver.stop()


async def test_a_preview_takes_the_discount_as_it_will_be_at_the_renewal(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1000)
    cheaper = await make_plan(api, amount=600)
    month = await coupon(api, percent_off=25, duration="repeating", duration_in_months=1)
    forever = await coupon(api, percent_off=25, duration="forever")
    previews = []
    for deal in (month, forever):
        clock, sub = await start(api, plan, at(2032, 1, 1), coupon_id=deal["id"])
        await advance(api, clock["id"], at(2032, 1, 15))
        body = {"plan_id": cheaper["id"], "preview": True}
        result = ok(await call(api, sub["id"], "change_plan", body))
        previews.append(kinds_and_amounts(result["invoice_preview"]))
        assert (await get_sub(api, sub["id"]))["discount"]["coupon_id"] == deal["id"]
    # The downgrade's renewal on Feb 1: the one-month discount ends then, forever does not
    # (25% of 600 = 150).
    assert previews == [[("subscription", 600)], [("subscription", 600), ("discount", -150)]]
