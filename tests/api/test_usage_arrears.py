"""Usage billed in arrears through the real stack on test clocks: a metered item beside a
licensed one, the renewal invoice's `usage` line (package rounding) after the grace for
late events (`RECUR_USAGE_GRACE_SECONDS`, 3600 by default), a late event inside the grace
counted and one after it refused, a metered-only subscription opening with a zero invoice,
a cancel mid-period billing the final usage, and a cancel at period end ending service (and
entitlements) at the period end while its final usage waits the grace."""

from __future__ import annotations

from datetime import timedelta

import httpx

from tests.api.billing_support import at, events_of, rejected
from tests.api.usage_support import (
    check,
    customer_on_clock,
    event,
    kinds,
    make_meter,
    metered_plan,
    subscribed_on_clock,
    token_plans,
)
from tests.helpers import (
    advance,
    entitled,
    invoices,
    make_plan,
    ok,
    subscribe,
    ts,
)


async def test_renewal_bills_the_ended_period_usage_after_the_grace(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    seat, metered = await token_plans(api)
    customer, clock = await customer_on_clock(api, at(2027, 9, 1))
    body = {"customer_id": customer["id"], "test_clock_id": clock["id"]}
    given = await api.post(
        "/v1/subscriptions",
        json=body | {"items": [{"plan_id": seat["id"]}, {"plan_id": metered["id"], "quantity": 2}]},
    )
    rejected(given, 422, "invalid_items")
    sub = await subscribe(api, **body, items=[{"plan_id": metered["id"]}, {"plan_id": seat["id"]}])
    assert sub["status"] == "active"
    assert sub["plan_id"] == seat["id"], "the subscription's plan is its first licensed item's"
    (opening,) = await invoices(api, sub["id"])
    assert kinds(opening) == [("subscription", 1000)], "only the licensed item up front"
    cus = customer["id"]
    ok(await api.post("/v1/usage_events", json=event(cus, "u1", tokens=1500)), 202)

    # The period has ended; the grace (an hour) has not.
    await advance(api, clock["id"], at(2027, 10, 1, 0, 30))
    assert len(await invoices(api, sub["id"])) == 1, "the renewal waits for the grace"
    late = event(cus, "u2", at(2027, 9, 30, 23), tokens=600)
    ok(await api.post("/v1/usage_events", json=late), 202)
    change = {"items": [{"plan_id": seat["id"], "quantity": 2}, {"plan_id": metered["id"]}]}
    refused = await api.post(f"/v1/subscriptions/{sub['id']}/update_items", json=change)
    rejected(refused, 409, "period_renewing")
    # A cancel "at period end" would end service at a time already past.
    at_end = {"at_period_end": True}
    refused = await api.post(f"/v1/subscriptions/{sub['id']}/cancel", json=at_end)
    rejected(refused, 409, "period_renewing")

    await advance(api, clock["id"], at(2027, 10, 1, 2))
    renewal = (await invoices(api, sub["id"]))[-1]
    # 2100 tokens: ceil(2100 / 1000) = 3 packages of 200 (the late event made the third).
    assert kinds(renewal) == [("subscription", 1000), ("usage", 600)]
    assert renewal["status"] == "paid" and renewal["total"] == 1600
    (usage,) = [line for line in renewal["lines"] if line["kind"] == "usage"]
    assert (usage["period_start"], usage["period_end"]) == (
        "2027-09-01T00:00:00Z",
        "2027-10-01T00:00:00Z",
    )
    assert "3 package(s) of 1000" in usage["description"]

    after = event(cus, "u3", at(2027, 9, 30, 23, 30), tokens=5000)
    rejected(await api.post("/v1/usage_events", json=after), 409, "period_closed")
    # October's usage is its own period, billed on November's renewal.
    ok(await api.post("/v1/usage_events", json=event(cus, "u4", tokens=10)), 202)
    await advance(api, clock["id"], at(2027, 11, 1, 1, 0, 1))
    november = (await invoices(api, sub["id"]))[-1]
    assert kinds(november) == [("subscription", 1000), ("usage", 200)]


async def test_metered_only_opens_at_zero_and_cancel_bills_final_usage(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    meter = await make_meter(api, "count")
    metered = await metered_plan(api, meter, 50, package_size=10)
    start = at(2027, 11, 1)
    customer, clock, sub = await subscribed_on_clock(api, start, metered)
    assert sub["status"] == "active"
    (opening,) = await invoices(api, sub["id"])
    assert (opening["total"], opening["status"]) == (0, "paid")
    cus = customer["id"]
    await advance(api, clock["id"], start + timedelta(days=10))
    events = [event(cus, f"c{i}") for i in range(21)]
    answer = ok(await api.post("/v1/usage_events/batch", json={"events": events}), 202)
    assert answer["accepted"] == 21

    path = f"/v1/subscriptions/{sub['id']}/cancel"
    canceled = ok(await api.post(path, json={"at_period_end": False}))
    assert canceled["status"] == "canceled"
    final = (await invoices(api, sub["id"]))[-1]
    assert final["billing_reason"] == "subscription_cancel"
    # 21 calls: ceil(21 / 10) = 3 packages of 50, for Nov 1 up to the cancel.
    assert kinds(final) == [("usage", 150)]
    assert final["status"] == "paid"
    (usage,) = final["lines"]
    assert (usage["period_start"], usage["period_end"]) == (
        "2027-11-01T00:00:00Z",
        "2027-11-11T00:00:00Z",
    )


async def test_cancel_at_period_end_bills_the_whole_period_after_the_grace(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    meter = await make_meter(api, "max", value_property="seats")
    limited = {"key": "seats", "limit": 100, "meter_id": meter["id"]}
    metered = await metered_plan(api, meter, 300, features=[limited])
    seat = await make_plan(api, amount=500)
    start = at(2028, 1, 1)
    customer, clock, sub = await subscribed_on_clock(api, start, seat, metered)
    cus = customer["id"]
    ok(await api.post("/v1/usage_events", json=event(cus, "m1", seats=4)), 202)
    path = f"/v1/subscriptions/{sub['id']}/cancel"
    ok(await api.post(path, json={"at_period_end": True}))
    period_end = at(2028, 2, 1)
    before = await check(api, cus, "posts")
    assert before == {"entitled": True, "active_until": "2028-02-01T00:00:00Z"}
    assert (await check(api, cus, "seats"))["used"] == 4
    granted = ok(await api.get(f"/v1/customers/{cus}/entitlements"))
    assert sorted(g["feature"] for g in granted) == ["posts", "seats"]

    # In the grace: still active (late events count), but service ended at the period end.
    await advance(api, clock["id"], at(2028, 2, 1, 0, 10))
    waiting = ok(await api.get(f"/v1/subscriptions/{sub['id']}"))
    assert (waiting["status"], waiting["cancel_at_period_end"]) == ("active", True)
    for feature in ("posts", "seats"):
        answer = await check(api, cus, feature)
        assert answer == {"entitled": False, "active_until": None}, (feature, answer)
    assert ok(await api.get(f"/v1/customers/{cus}/entitlements")) == []
    late = event(cus, "m2", at(2028, 1, 31, 23), seats=6)
    ok(await api.post("/v1/usage_events", json=late), 202)
    await advance(api, clock["id"], at(2028, 2, 1, 1, 0, 1))
    ended = ok(await api.get(f"/v1/subscriptions/{sub['id']}"))
    assert ended["status"] == "canceled"
    assert ts(ended["canceled_at"]) == period_end, "when service ended, not the grace end"
    (canceled,) = await events_of(api, sub["id"], "subscription.canceled")
    assert ts(canceled["occurred_at"]) == period_end
    assert canceled["data"]["reason"] == "cancel_at_period_end"
    final = (await invoices(api, sub["id"]))[-1]
    assert final["billing_reason"] == "subscription_cancel"
    assert kinds(final) == [("usage", 1800)], "max 6 seats, January in full"
    assert final["status"] == "paid"
    assert ts(final["created_at"]) == period_end + timedelta(hours=1), "made at the grace end"
    assert not await entitled(api, cus, "posts")


async def test_a_metered_item_removed_mid_period_bills_its_usage_on_the_renewal(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    seat, metered = await token_plans(api)
    customer, clock, sub = await subscribed_on_clock(api, at(2028, 3, 1), seat, metered)
    cus = customer["id"]
    ok(await api.post("/v1/usage_events", json=event(cus, "r1", tokens=2500)), 202)
    await advance(api, clock["id"], at(2028, 3, 11))
    change = {"items": [{"plan_id": seat["id"], "quantity": 2}], "when": "now"}
    ok(await api.post(f"/v1/subscriptions/{sub['id']}/update_items", json=change))
    gone = event(cus, "r2", tokens=1)
    rejected(await api.post("/v1/usage_events", json=gone), 409, "no_metered_subscription")

    await advance(api, clock["id"], at(2028, 4, 1, 1, 0, 1))
    renewal = (await invoices(api, sub["id"]))[-1]
    assert renewal["billing_reason"] == "subscription_cycle"
    assert kinds(renewal) == [("subscription", 2000), ("usage", 600)]
    (usage,) = [line for line in renewal["lines"] if line["kind"] == "usage"]
    assert (usage["period_start"], usage["period_end"]) == (
        "2028-03-01T00:00:00Z",
        "2028-03-11T00:00:00Z",
    )


async def test_usage_before_a_pause_is_billed_by_the_resuming_invoice(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    meter = await make_meter(api, "count")
    metered = await metered_plan(api, meter, 25)
    seat = await make_plan(api, amount=3000)
    start = at(2028, 5, 1)
    customer, clock, sub = await subscribed_on_clock(api, start, seat, metered)
    cus = customer["id"]
    calls = [event(cus, f"p{i}") for i in range(4)]
    ok(await api.post("/v1/usage_events/batch", json={"events": calls}), 202)
    await advance(api, clock["id"], at(2028, 5, 16))
    path = f"/v1/subscriptions/{sub['id']}"
    ok(await api.post(f"{path}/pause", json={}))
    paused = event(cus, "p-paused")
    rejected(await api.post("/v1/usage_events", json=paused), 409, "no_metered_subscription")
    await advance(api, clock["id"], at(2028, 5, 20))
    resumed = ok(await api.post(f"{path}/resume", json={}))
    assert resumed["status"] == "active"
    invoice = (await invoices(api, sub["id"]))[-1]
    assert invoice["billing_reason"] == "subscription_resume"
    usage = [line for line in invoice["lines"] if line["kind"] == "usage"]
    assert [(u["amount"], u["period_start"], u["period_end"]) for u in usage] == [
        (100, "2028-05-01T00:00:00Z", "2028-05-16T00:00:00Z")
    ], "4 calls at 25, up to the pause"
