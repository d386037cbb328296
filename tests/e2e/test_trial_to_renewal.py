"""The foundation slice end to end through the HTTP API, on a test clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from tests.helpers import (
    advance,
    entitled,
    event_types,
    get_sub,
    invoices,
    make_clock,
    make_customer,
    make_plan,
    subscribe,
    ts,
)

START = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)


async def test_trial_then_activation_then_calendar_renewal(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=1500, trial_days=7, features=["posts", "archive"])
    customer = await make_customer(api, "pm_card_visa")
    clock = await make_clock(api, START)

    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    assert sub["status"] == "trialing"
    assert ts(sub["trial_end"]) == START + timedelta(days=7)
    assert await entitled(api, customer["id"], "archive")
    assert not await entitled(api, customer["id"], "merch")
    assert await invoices(api, sub["id"]) == []

    await advance(api, clock["id"], START + timedelta(days=7))
    sub = await get_sub(api, sub["id"])
    assert sub["status"] == "active"
    trial_end = START + timedelta(days=7)
    assert ts(sub["current_period_start"]) == trial_end
    assert ts(sub["current_period_end"]) == datetime(2027, 2, 17, 12, 0, tzinfo=UTC)
    paid = await invoices(api, sub["id"])
    assert [(i["status"], i["total"], i["currency"]) for i in paid] == [("paid", 1500, "usd")]
    assert paid[0]["lines"][0]["kind"] == "subscription"
    assert paid[0]["attempts"][0]["status"] == "succeeded"

    await advance(api, clock["id"], datetime(2027, 2, 17, 12, 0, tzinfo=UTC))
    sub = await get_sub(api, sub["id"])
    assert sub["status"] == "active"
    assert ts(sub["current_period_start"]) == datetime(2027, 2, 17, 12, 0, tzinfo=UTC)
    assert ts(sub["current_period_end"]) == datetime(2027, 3, 17, 12, 0, tzinfo=UTC)
    paid = await invoices(api, sub["id"])
    assert [(i["status"], i["total"]) for i in paid] == [("paid", 1500), ("paid", 1500)]
    assert await entitled(api, customer["id"], "archive")

    timeline = await event_types(api, sub["id"])
    expected_order = [
        "subscription.created",
        "subscription.trial_started",
        "entitlement.granted",
        "subscription.trial_will_end",
        "invoice.paid",
        "subscription.activated",
        "invoice.paid",
        "subscription.renewed",
    ]
    positions = [timeline.index(t) if t != "invoice.paid" else -1 for t in expected_order]
    assert [p for p in positions if p >= 0] == sorted(p for p in positions if p >= 0), timeline
    assert timeline.count("invoice.paid") == 2
    assert timeline.count("subscription.renewed") == 1


async def test_advance_over_many_periods_renews_each(app_client: httpx.AsyncClient) -> None:
    """One advance across three periods: three renewals, each through continue-as-new."""
    api = app_client
    plan = await make_plan(api, amount=700)
    customer = await make_customer(api)
    clock = await make_clock(api, datetime(2028, 1, 31, 9, 0, tzinfo=UTC))
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    assert sub["status"] == "active"
    assert ts(sub["current_period_end"]) == datetime(2028, 2, 29, 9, 0, tzinfo=UTC)

    await advance(api, clock["id"], datetime(2028, 4, 30, 10, 0, tzinfo=UTC))
    sub = await get_sub(api, sub["id"])
    assert ts(sub["current_period_start"]) == datetime(2028, 4, 30, 9, 0, tzinfo=UTC)
    assert ts(sub["current_period_end"]) == datetime(2028, 5, 31, 9, 0, tzinfo=UTC)
    bills = await invoices(api, sub["id"])
    periods = [(ts(i["period_start"]).date().isoformat(), i["total"], i["status"]) for i in bills]
    assert periods == [
        ("2028-01-31", 700, "paid"),
        ("2028-02-29", 700, "paid"),
        ("2028-03-31", 700, "paid"),
        ("2028-04-30", 700, "paid"),
    ]
