"""Edges of usage billing through the real stack on test clocks: two metered items on one
meter refused wherever a set of items is given, and usage during a free trial counting
against its limits but never billed."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.billing_support import at, rejected
from tests.api.usage_support import (
    check,
    customer_on_clock,
    event,
    kinds,
    make_meter,
    metered_plan,
)
from tests.helpers import advance, get_sub, invoices, make_plan, ok


def plans_of(sub: dict[str, Any]) -> list[str]:
    return [item["plan_id"] for item in sub["items"]]


async def test_two_metered_items_on_one_meter_are_refused(app_client: httpx.AsyncClient) -> None:
    api = app_client
    calls_meter = await make_meter(api, "count")
    disk_meter = await make_meter(api, "max", value_property="gb")
    calls = await metered_plan(api, calls_meter, 10)
    overage = await metered_plan(api, calls_meter, 20)
    disk = await metered_plan(api, disk_meter, 5)
    seat = await make_plan(api, amount=1000)
    customer, clock = await customer_on_clock(api, at(2028, 7, 1))
    body = {"customer_id": customer["id"], "test_clock_id": clock["id"]}
    shared = f"Plans {calls['id']} and {overage['id']} share meter {calls_meter['id']}"

    twice = [{"plan_id": calls["id"]}, {"plan_id": seat["id"]}, {"plan_id": overage["id"]}]
    refused = await api.post("/v1/subscriptions", json=body | {"items": twice})
    assert shared in rejected(refused, 422, "invalid_items")

    # Metered items on different meters are fine.
    items = [{"plan_id": seat["id"]}, {"plan_id": calls["id"]}, {"plan_id": disk["id"]}]
    sub = ok(await api.post("/v1/subscriptions", json=body | {"items": items}), 201)
    assert sub["status"] == "active"
    path = f"/v1/subscriptions/{sub['id']}"

    added = {"items": [*items, {"plan_id": overage["id"]}], "when": "now"}
    refused = await api.post(f"{path}/update_items", json=added)
    assert shared in rejected(refused, 422, "invalid_items")
    # change_plan moves the first item (the seat) to the plan; the metered items stay.
    refused = await api.post(f"{path}/change_plan", json={"plan_id": overage["id"]})
    message = rejected(refused, 422, "invalid_items")
    assert f"share meter {calls_meter['id']}" in message and overage["id"] in message
    unchanged = await get_sub(api, sub["id"])
    assert plans_of(unchanged) == [seat["id"], calls["id"], disk["id"]]
    assert unchanged["pending_change"] is None

    # Replacing the meter's item by another on the same meter is one item per meter.
    swap = {"items": [items[0], {"plan_id": overage["id"]}, items[2]], "when": "now"}
    swapped = ok(await api.post(f"{path}/update_items", json=swap))
    assert plans_of(swapped["subscription"]) == [seat["id"], overage["id"], disk["id"]]


async def test_usage_during_a_trial_counts_against_limits_and_is_free(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    meter = await make_meter(api, "sum", value_property="tokens")
    limited = {"key": "tokens", "limit": 1000, "meter_id": meter["id"]}
    metered = await metered_plan(api, meter, 100, package_size=100, features=[limited])
    seat = await make_plan(api, amount=1000)
    customer, clock = await customer_on_clock(api, at(2028, 8, 1))
    sub = ok(
        await api.post(
            "/v1/subscriptions",
            json={
                "customer_id": customer["id"],
                "test_clock_id": clock["id"],
                "items": [{"plan_id": seat["id"]}, {"plan_id": metered["id"]}],
                "trial_days": 14,
            },
        ),
        201,
    )
    assert (sub["status"], sub["trial_end"]) == ("trialing", "2028-08-15T00:00:00Z")
    cus = customer["id"]

    # During the trial: events are accepted and count against the limit.
    await advance(api, clock["id"], at(2028, 8, 5))
    ok(await api.post("/v1/usage_events", json=event(cus, "t1", tokens=700)), 202)
    used = await check(api, cus, "tokens")
    assert (used["entitled"], used["used"], used["remaining"]) == (True, 700, 300)
    ok(await api.post("/v1/usage_events", json=event(cus, "t2", tokens=400)), 202)
    full = await check(api, cus, "tokens")
    assert (full["entitled"], full["used"], full["remaining"]) == (False, 1100, 0)
    (trial_usage,) = ok(await api.get(f"/v1/subscriptions/{sub['id']}/usage"))
    assert (trial_usage["period_start"], trial_usage["quantity"]) == ("2028-08-01T00:00:00Z", 1100)
    assert type(trial_usage["quantity"]) is int, "a whole quantity is a JSON integer"
    assert trial_usage["amount"] == 0, "a trial's usage is free"

    # The trial ends: the first invoice bills the licensed item only, the limit starts over.
    await advance(api, clock["id"], at(2028, 8, 15, 0, 0, 1))
    assert (await get_sub(api, sub["id"]))["status"] == "active"
    (first,) = await invoices(api, sub["id"])
    assert first["billing_reason"] == "subscription_cycle"
    assert kinds(first) == [("subscription", 1000)], "no usage line for the trial"
    fresh = await check(api, cus, "tokens")
    assert (fresh["entitled"], fresh["used"], fresh["remaining"]) == (True, 0, 1000)

    # After the trial: billed on the next renewal, for [trial end, period end) only; a late
    # event stamped in the trial lands in the trial's (never billed) usage.
    await advance(api, clock["id"], at(2028, 8, 20))
    ok(await api.post("/v1/usage_events", json=event(cus, "p1", tokens=250)), 202)
    late = event(cus, "t3", at(2028, 8, 10), tokens=5000)
    ok(await api.post("/v1/usage_events", json=late), 202)
    assert (await check(api, cus, "tokens"))["used"] == 250
    (current,) = ok(await api.get(f"/v1/subscriptions/{sub['id']}/usage"))
    assert (current["period_start"], current["quantity"], current["amount"]) == (
        "2028-08-15T00:00:00Z",
        250,
        300,
    )
    await advance(api, clock["id"], at(2028, 9, 15, 1, 0, 1))
    renewal = (await invoices(api, sub["id"]))[-1]
    assert renewal["billing_reason"] == "subscription_cycle"
    # 250 tokens: ceil(250 / 100) = 3 packages of 100.
    assert kinds(renewal) == [("subscription", 1000), ("usage", 300)]
    (usage,) = [line for line in renewal["lines"] if line["kind"] == "usage"]
    assert (usage["period_start"], usage["period_end"]) == (
        "2028-08-15T00:00:00Z",
        "2028-09-15T00:00:00Z",
    )
    assert renewal["status"] == "paid"


async def test_a_meter_that_changes_items_twice_in_a_period_is_billed_once(
    app_client: httpx.AsyncClient,
) -> None:
    """Two metered plans take turns on one meter within a period (one removed, the other
    added, then removed too): the meter's aggregate is billed once, by the plan that held
    it last, up to its removal."""
    api = app_client
    meter = await make_meter(api, "sum", value_property="tokens")
    first = await metered_plan(api, meter, 100, package_size=1000)
    second = await metered_plan(api, meter, 300, package_size=1000)
    seat = await make_plan(api, amount=1000)
    customer, clock = await customer_on_clock(api, at(2028, 9, 1))
    cus = customer["id"]
    sub = ok(
        await api.post(
            "/v1/subscriptions",
            json={
                "customer_id": cus,
                "test_clock_id": clock["id"],
                "items": [{"plan_id": seat["id"]}, {"plan_id": first["id"]}],
            },
        ),
        201,
    )
    path = f"/v1/subscriptions/{sub['id']}/update_items"
    ok(await api.post("/v1/usage_events", json=event(cus, "a1", tokens=1500)), 202)
    await advance(api, clock["id"], at(2028, 9, 5))
    alone = {"items": [{"plan_id": seat["id"]}], "when": "now"}
    ok(await api.post(path, json=alone))
    await advance(api, clock["id"], at(2028, 9, 10))
    both = {"items": [{"plan_id": seat["id"]}, {"plan_id": second["id"]}], "when": "now"}
    ok(await api.post(path, json=both))
    ok(await api.post("/v1/usage_events", json=event(cus, "b1", tokens=700)), 202)
    await advance(api, clock["id"], at(2028, 9, 20))
    ok(await api.post(path, json=alone))

    await advance(api, clock["id"], at(2028, 10, 1, 1, 0, 1))  # after the usage grace
    renewal = (await invoices(api, sub["id"]))[-1]
    assert renewal["billing_reason"] == "subscription_cycle"
    usage = [line for line in renewal["lines"] if line["kind"] == "usage"]
    # 1500 + 700 tokens on the meter this period: 3 packages at the second plan's 300.
    assert [(u["amount"], u["period_start"], u["period_end"]) for u in usage] == [
        (900, "2028-09-01T00:00:00Z", "2028-09-20T00:00:00Z")
    ]
