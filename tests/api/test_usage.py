"""Usage-based billing through the API on the real stack, on test clocks: meters, metered
plans, ingestion (single and batch, rejections, duplicates sequential and concurrent),
every aggregation, package rounding, usage limits reached and reset at the next period."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx

from tests.api.billing_support import api_key, at, events_of, rejected, start_active
from tests.api.usage_support import batch, check, event, make_meter
from tests.helpers import advance, make_customer, make_plan, ok


async def test_meters_and_plans_validate_their_usage_terms(app_client: httpx.AsyncClient) -> None:
    api = app_client
    named = f"meter_{uuid.uuid4().hex[:8]}"
    meter = await make_meter(api, "sum", id=named, value_property="tokens")
    assert meter["id"] == named and meter["aggregation"] == "sum"
    again = await api.post(
        "/v1/meters",
        json={"id": named, "name": "x", "event_name": "e", "aggregation": "count"},
    )
    rejected(again, 409, "meter_exists")
    rejected(
        await api.post("/v1/meters", json={"name": "x", "event_name": "e", "aggregation": "sum"}),
        422,
        "validation_error",
    )
    assert named in [m["id"] for m in ok(await api.get("/v1/meters"))]
    assert ok(await api.get(f"/v1/meters/{named}"))["event_name"] == "api_call"

    plan = await make_plan(
        api,
        usage_type="metered",
        meter_id=named,
        amount=200,
        package_size=1000,
        features=["posts", {"key": "calls", "limit": 500, "meter_id": named}],
    )
    assert (plan["usage_type"], plan["meter_id"], plan["package_size"]) == ("metered", named, 1000)
    assert plan["features"] == ["posts", {"key": "calls", "limit": 500, "meter_id": named}]
    assert ok(await api.get(f"/v1/plans/{plan['id']}"))["features"] == plan["features"]

    base = {"name": "x", "amount": 1, "currency": "usd", "interval": "month"}
    missing = await api.post("/v1/plans", json=base | {"usage_type": "metered", "meter_id": "nope"})
    rejected(missing, 404, "resource_missing")
    rejected(
        await api.post("/v1/plans", json=base | {"usage_type": "metered"}), 422, "validation_error"
    )
    rejected(await api.post("/v1/plans", json=base | {"meter_id": named}), 422, "validation_error")
    twice = base | {"features": ["calls", {"key": "calls", "limit": 1, "meter_id": named}]}
    rejected(await api.post("/v1/plans", json=twice), 422, "duplicate_features")

    support = await api_key(api, "support")
    body = event("cus_x", "t1")
    rejected(await api.post("/v1/usage_events", json=body, headers=support), 403, "forbidden")


async def test_every_aggregation_with_duplicates_and_rejections(
    app_client: httpx.AsyncClient,
) -> None:
    """One licensed plan limits five features, one per aggregation over the same events:
    each feature's `used` is its meter's quantity."""
    api = app_client
    meters = {
        "sum": await make_meter(api, "sum", value_property="tokens"),
        "count": await make_meter(api, "count"),
        "max": await make_meter(api, "max", value_property="tokens"),
        "last": await make_meter(api, "last", value_property="tokens"),
        "unique_count": await make_meter(api, "unique_count", unique_property="user"),
    }
    features = [{"key": f"f_{k}", "limit": 10**6, "meter_id": m["id"]} for k, m in meters.items()]
    plan = await make_plan(api, amount=1000, features=features)
    start = at(2027, 3, 1)
    customer, clock, sub = await start_active(api, plan, start)
    cus = customer["id"]
    h = timedelta(hours=1)
    await advance(api, clock["id"], start + 4 * h)

    answer = await batch(
        api,
        [
            event(cus, "a", start + h, tokens=5, user="ann"),
            event(cus, "b", start + 2 * h, tokens="2.5", user="bob"),
            event(cus, "c", start + h / 2, tokens=7, user="ann"),  # earlier, arrives later
            event(cus, "d", start + 3 * h, tokens=0.25, user="cid"),
            event(cus, "b", start + 4 * h, tokens=100, user="zed"),  # duplicate of b
            event("cus_nobody", "e", start, tokens=1, user="x"),
            event(cus, "f", start, tokens=1) | {"event_name": "other"},
            event(cus, "g", start, user="ann"),  # no tokens
            event(cus, "h", start + 4 * h + timedelta(minutes=6), tokens=1, user="x"),
            event(cus, "i", start - h, tokens=1, user="x"),  # before the first period
            42,
            event(cus, "j\x00", start, tokens=1, user="x"),
            event(cus, "k", start, tokens=-1, user="x"),
        ],
    )
    assert (answer["accepted"], answer["duplicates"]) == (4, 1), answer
    assert [(r["index"], r["code"]) for r in answer["rejected"]] == [
        (5, "unknown_customer"),
        (6, "no_metered_subscription"),
        (7, "invalid_property"),
        (8, "timestamp_in_future"),
        (9, "period_closed"),
        (10, "validation_error"),
        (11, "invalid_characters"),
        (12, "invalid_property"),
    ]
    expected = {"sum": 14.75, "count": 4, "max": 7, "last": 0.25, "unique_count": 3}
    for kind, quantity in expected.items():
        got = await check(api, cus, f"f_{kind}")
        assert got["entitled"] is True and got["limit"] == 10**6, got
        assert got["used"] == quantity, (kind, got)
        assert got["remaining"] == 10**6 - quantity

    # The same batch again: all duplicates, nothing changes.
    again = await batch(api, [event(cus, "a", start + h, tokens=5, user="ann")])
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    assert (await check(api, cus, "f_sum"))["used"] == 14.75

    # No timestamp: the test clock's now (not the real time, which is before the period).
    await advance(api, clock["id"], at(2027, 3, 10))
    answer = await batch(
        api,
        [
            event(cus, "now", None, tokens=42, user="dan"),
            event(cus, "earlier", at(2027, 3, 9), tokens=1, user="dan"),
        ],
    )
    assert (answer["accepted"], answer["rejected"]) == (2, [])
    assert (await check(api, cus, "f_last"))["used"] == 42
    assert (await check(api, cus, "f_unique_count"))["used"] == 4
    assert (await check(api, cus, "f_max"))["used"] == 42
    assert sub["id"]


async def test_single_events_and_metered_usage_line(app_client: httpx.AsyncClient) -> None:
    api = app_client
    meter = await make_meter(api, "sum", value_property="tokens")
    plan = await make_plan(
        api, usage_type="metered", meter_id=meter["id"], amount=200, package_size=1000
    )
    start = at(2027, 5, 1)
    customer, _, sub = await start_active(api, plan, start)
    cus = customer["id"]

    first = ok(await api.post("/v1/usage_events", json=event(cus, "x1", tokens=2500)), 202)
    assert first["id"].startswith("uev_") and first["duplicate"] is False
    resent = ok(await api.post("/v1/usage_events", json=event(cus, "x1", tokens=9)), 202)
    assert resent == {"id": first["id"], "duplicate": True}
    ok(await api.post("/v1/usage_events", json=event(cus, "x2", tokens="0.5")), 202)

    usage = ok(await api.get(f"/v1/subscriptions/{sub['id']}/usage"))
    assert usage == [
        {
            "meter_id": meter["id"],
            "plan_id": plan["id"],
            "period_start": "2027-05-01T00:00:00Z",
            "period_end": "2027-06-01T00:00:00Z",
            "quantity": 2500.5,
            "amount": 600,  # ceil(2500.5 / 1000) = 3 packages of 200
        }
    ]
    rejected(
        await api.post("/v1/usage_events", json=event("cus_nobody", "x3", tokens=1)),
        404,
        "unknown_customer",
    )
    rejected(
        await api.post("/v1/usage_events", json=event(cus, "x4", tokens="many")),
        422,
        "invalid_property",
    )
    late = event(cus, "x5", start - timedelta(days=1), tokens=1)
    rejected(await api.post("/v1/usage_events", json=late), 409, "period_closed")
    ahead = event(cus, "x6", start + timedelta(minutes=10), tokens=1)
    rejected(await api.post("/v1/usage_events", json=ahead), 422, "timestamp_in_future")
    other = event(cus, "x7", tokens=1) | {"event_name": "other"}
    rejected(await api.post("/v1/usage_events", json=other), 409, "no_metered_subscription")
    rejected(await api.get("/v1/subscriptions/sub_nope/usage"), 404, "resource_missing")
    broken = await api.post("/v1/usage_events", content=b"{not json")
    rejected(broken, 400, "invalid_json")
    rejected(await api.post("/v1/usage_events", json={"customer_id": cus}), 422, "validation_error")
    old = event(cus, "x8", at(1900, 1, 1), tokens=1)
    rejected(await api.post("/v1/usage_events", json=old), 422, "time_out_of_range")
    nul = event(cus, "x\x009", tokens=1)
    rejected(await api.post("/v1/usage_events", json=nul), 422, "invalid_characters")
    too_many = {"events": [event(cus, f"y{i}", tokens=1) for i in range(1001)]}
    rejected(await api.post("/v1/usage_events/batch", json=too_many), 422, "validation_error")


async def test_concurrent_copies_of_a_batch_count_once(app_client: httpx.AsyncClient) -> None:
    api = app_client
    count = await make_meter(api, "count")
    uniques = await make_meter(api, "unique_count", unique_property="user")
    plan = await make_plan(
        api,
        features=[
            {"key": "calls", "limit": 10**6, "meter_id": count["id"]},
            {"key": "users", "limit": 10**6, "meter_id": uniques["id"]},
        ],
    )
    customer, _, _ = await start_active(api, plan, at(2027, 6, 1))
    cus = customer["id"]
    events = [event(cus, f"tx{i}", user=f"u{i % 37}") for i in range(300)]
    answers = await asyncio.gather(*(batch(api, events) for _ in range(4)))
    assert sum(a["accepted"] for a in answers) == 300
    assert sum(a["duplicates"] for a in answers) == 900
    assert all(a["rejected"] == [] for a in answers)
    assert (await check(api, cus, "calls"))["used"] == 300
    assert (await check(api, cus, "users"))["used"] == 37


async def test_limit_reached_once_and_reset_next_period(app_client: httpx.AsyncClient) -> None:
    api = app_client
    meter = await make_meter(api, "sum", value_property="contacts")
    plan = await make_plan(
        api, features=["posts", {"key": "contacts", "limit": 1000, "meter_id": meter["id"]}]
    )
    customer, clock, sub = await start_active(api, plan, at(2027, 7, 1))
    cus = customer["id"]
    plain = await check(api, cus, "posts")
    assert plain["entitled"] is True and "limit" not in plain and "used" not in plain
    fresh = await check(api, cus, "contacts")
    assert (fresh["entitled"], fresh["used"], fresh["remaining"]) == (True, 0, 1000)

    await batch(api, [event(cus, "c1", contacts=999)])
    near = await check(api, cus, "contacts")
    assert (near["entitled"], near["used"], near["remaining"]) == (True, 999, 1)
    await batch(api, [event(cus, "c2", contacts=1)])
    full = await check(api, cus, "contacts")
    assert (full["entitled"], full["used"], full["remaining"]) == (False, 1000, 0)
    await batch(api, [event(cus, "c3", contacts=5)])
    assert (await check(api, cus, "contacts"))["used"] == 1005
    assert (await check(api, cus, "posts"))["entitled"] is True, "other features unaffected"
    (reached,) = await events_of(api, sub["id"], "subscription.usage_limit_reached")
    assert reached["data"]["feature"] == "contacts"
    assert (reached["data"]["limit"], reached["data"]["used"]) == (1000, 1000)
    assert reached["data"]["period_start"] == "2027-07-01T00:00:00Z"

    await advance(api, clock["id"], at(2027, 8, 1, 0, 0, 1))
    renewed = await check(api, cus, "contacts")
    assert (renewed["entitled"], renewed["used"], renewed["remaining"]) == (True, 0, 1000)
    await batch(api, [event(cus, "c4", contacts=1000)])
    assert (await check(api, cus, "contacts"))["entitled"] is False
    fired = await events_of(api, sub["id"], "subscription.usage_limit_reached")
    assert [e["data"]["period_start"] for e in fired] == [
        "2027-07-01T00:00:00Z",
        "2027-08-01T00:00:00Z",
    ]
    # A late event for July (its aggregate is open until invoiced) counts into July only.
    late = await batch(api, [event(cus, "c5", at(2027, 7, 31), contacts=3)])
    assert late["accepted"] == 1
    assert (await check(api, cus, "contacts"))["used"] == 1000


async def test_customer_without_metering_subscription(app_client: httpx.AsyncClient) -> None:
    customer = await make_customer(app_client)
    answer = await batch(app_client, [event(customer["id"], "z", tokens=1)])
    assert [r["code"] for r in answer["rejected"]] == ["no_metered_subscription"]


async def test_concurrent_single_events_each_get_their_answer(
    app_client: httpx.AsyncClient,
) -> None:
    """Single events sent at once share writes; each still gets its own answer."""
    api = app_client
    meter = await make_meter(api, "sum", value_property="tokens")
    plan = await make_plan(api, features=[{"key": "t", "limit": 10**6, "meter_id": meter["id"]}])
    customer, _, _ = await start_active(api, plan, at(2027, 9, 1))
    cus = customer["id"]
    bodies = [event(cus, f"s{i}", tokens=i) for i in range(30)]
    bodies += [event(cus, "same", tokens=1000) for _ in range(10)]
    bodies += [event("cus_nobody", f"n{i}", tokens=1) for i in range(5)]
    answers = await asyncio.gather(*(api.post("/v1/usage_events", json=b) for b in bodies))
    assert [a.status_code for a in answers] == [202] * 40 + [404] * 5
    distinct = [a.json() for a in answers[:30]]
    assert all(a["duplicate"] is False for a in distinct)
    assert len({a["id"] for a in distinct}) == 30
    same = [a.json() for a in answers[30:40]]
    assert sorted(a["duplicate"] for a in same) == [False] + [True] * 9
    assert len({a["id"] for a in same}) == 1, "every copy names the stored event"
    assert (await check(api, cus, "t"))["used"] == sum(range(30)) + 1000
