"""The entitlements table after each lifecycle transition, on test clocks, through the API
(`GET /v1/customers/{id}/entitlements` and `GET /v1/entitlements/check`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.helpers import (
    advance,
    entitled,
    event_types,
    get_sub,
    make_clock,
    make_customer,
    make_plan,
    ok,
    subscribe,
    ts,
)

START = datetime(2027, 8, 2, 12, 0, tzinfo=UTC)
BASIC = ["posts"]
PRO = ["posts", "archive", "merch"]


async def _grants(api: httpx.AsyncClient, customer_id: str) -> dict[str, dict[str, Any]]:
    rows = ok(await api.get(f"/v1/customers/{customer_id}/entitlements"))
    return {row["feature"]: row for row in rows}


async def _check(api: httpx.AsyncClient, customer_id: str, feature: str) -> dict[str, Any]:
    params = {"customer_id": customer_id, "feature": feature}
    return ok(await api.get("/v1/entitlements/check", params=params))  # type: ignore[no-any-return]


async def _active(
    api: httpx.AsyncClient, features: list[str], amount: int = 1000
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    plan = await make_plan(api, amount=amount, features=features)
    customer = await make_customer(api)
    clock = await make_clock(api, START)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    assert sub["status"] == "active"
    return plan, customer, clock, sub


async def _assert_exactly(
    api: httpx.AsyncClient,
    customer_id: str,
    features: list[str],
    *,
    sub_id: str,
    plan_id: str,
    active_until: datetime | None,
) -> None:
    grants = await _grants(api, customer_id)
    assert sorted(grants) == sorted(features)
    for row in grants.values():
        assert row["subscription_id"] == sub_id
        assert row["plan_id"] == plan_id
        assert (ts(row["active_until"]) if row["active_until"] else None) == active_until
    for feature in {*PRO, *features}:
        check = await _check(api, customer_id, feature)
        assert check["entitled"] is (feature in features), feature
        assert (ts(check["active_until"]) if check["active_until"] else None) == (
            active_until if feature in features else None
        )


async def test_trial_grants_until_trial_end_then_period_end(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=1200, trial_days=7, features=["posts", "archive"])
    customer = await make_customer(api)
    clock = await make_clock(api, START)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    assert sub["status"] == "trialing"
    trial_end = START + timedelta(days=7)
    await _assert_exactly(
        api,
        customer["id"],
        ["posts", "archive"],
        sub_id=sub["id"],
        plan_id=plan["id"],
        active_until=trial_end,
    )
    await advance(api, clock["id"], trial_end)
    sub = await get_sub(api, sub["id"])
    assert sub["status"] == "active"
    await _assert_exactly(
        api,
        customer["id"],
        ["posts", "archive"],
        sub_id=sub["id"],
        plan_id=plan["id"],
        active_until=ts(sub["current_period_end"]),
    )
    timeline = await event_types(api, sub["id"])
    assert timeline.count("entitlement.granted") == 2, "a renewal re-grants nothing new"
    assert "entitlement.revoked" not in timeline


async def test_upgrade_now_swaps_to_the_new_plan(app_client: httpx.AsyncClient) -> None:
    api = app_client
    _basic, customer, _clock, sub = await _active(api, BASIC, amount=1000)
    pro = await make_plan(api, amount=3000, features=PRO)
    result = ok(
        await api.post(f"/v1/subscriptions/{sub['id']}/change_plan", json={"plan_id": pro["id"]})
    )
    assert result["subscription"]["plan_id"] == pro["id"]
    sub = await get_sub(api, sub["id"])
    await _assert_exactly(
        api,
        customer["id"],
        PRO,
        sub_id=sub["id"],
        plan_id=pro["id"],
        active_until=ts(sub["current_period_end"]),
    )
    timeline = await event_types(api, sub["id"])
    assert timeline.count("entitlement.granted") == 3, "posts, then archive and merch"


async def test_downgrade_waits_for_the_period_end(app_client: httpx.AsyncClient) -> None:
    api = app_client
    pro, customer, clock, sub = await _active(api, PRO, amount=3000)
    basic = await make_plan(api, amount=1000, features=BASIC)
    result = ok(
        await api.post(f"/v1/subscriptions/{sub['id']}/change_plan", json={"plan_id": basic["id"]})
    )
    assert result["subscription"]["pending_change"]["plan_id"] == basic["id"]
    period_end = ts(sub["current_period_end"])
    await _assert_exactly(
        api, customer["id"], PRO, sub_id=sub["id"], plan_id=pro["id"], active_until=period_end
    )
    await advance(api, clock["id"], period_end - timedelta(seconds=1))
    assert await entitled(api, customer["id"], "merch"), "kept until the period ends"

    await advance(api, clock["id"], period_end)
    sub = await get_sub(api, sub["id"])
    assert sub["plan_id"] == basic["id"]
    await _assert_exactly(
        api,
        customer["id"],
        BASIC,
        sub_id=sub["id"],
        plan_id=basic["id"],
        active_until=ts(sub["current_period_end"]),
    )
    timeline = await event_types(api, sub["id"])
    assert timeline.count("entitlement.revoked") == 2, "archive and merch"


async def test_dunning_grace_keeps_entitlements_until_exhausted(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    plan, customer, clock, sub = await _active(api, ["posts", "archive"], amount=1200)
    ok(
        await api.post(
            f"/v1/customers/{customer['id']}/payment_method",
            json={"payment_method": "pm_card_chargeCustomerFail"},
        )
    )
    renewal = ts(sub["current_period_end"])
    await advance(api, clock["id"], renewal)
    sub = await get_sub(api, sub["id"])
    assert sub["status"] == "past_due"
    grants = await _grants(api, customer["id"])
    assert sorted(grants) == ["archive", "posts"], "kept during the dunning grace"
    assert all(g["plan_id"] == plan["id"] for g in grants.values())

    await advance(api, clock["id"], renewal + timedelta(days=7))
    assert (await get_sub(api, sub["id"]))["status"] == "past_due"
    assert sorted(await _grants(api, customer["id"])) == ["archive", "posts"]

    await advance(api, clock["id"], renewal + timedelta(days=15))
    assert (await get_sub(api, sub["id"]))["status"] == "canceled"
    await _assert_exactly(
        api, customer["id"], [], sub_id=sub["id"], plan_id=plan["id"], active_until=None
    )


async def test_cancel_at_period_end_then_now(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan, customer, clock, sub = await _active(api, ["posts", "archive"])
    period_end = ts(sub["current_period_end"])
    ok(await api.post(f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": True}))
    await _assert_exactly(
        api,
        customer["id"],
        ["posts", "archive"],
        sub_id=sub["id"],
        plan_id=plan["id"],
        active_until=period_end,
    )
    await advance(api, clock["id"], period_end)
    assert (await get_sub(api, sub["id"]))["status"] == "canceled"
    assert await _grants(api, customer["id"]) == {}

    # An immediate cancel revokes at once.
    _plan2, customer2, _clock2, sub2 = await _active(api, ["posts"])
    assert await entitled(api, customer2["id"], "posts")
    ok(await api.post(f"/v1/subscriptions/{sub2['id']}/cancel", json={"at_period_end": False}))
    assert await _grants(api, customer2["id"]) == {}
    assert not await entitled(api, customer2["id"], "posts")


async def test_reactivation_keeps_entitlements_across_the_period_end(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    plan, customer, clock, sub = await _active(api, ["posts"])
    ok(await api.post(f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": True}))
    ok(await api.post(f"/v1/subscriptions/{sub['id']}/reactivate"))
    await advance(api, clock["id"], ts(sub["current_period_end"]))
    sub = await get_sub(api, sub["id"])
    assert sub["status"] == "active"
    await _assert_exactly(
        api,
        customer["id"],
        ["posts"],
        sub_id=sub["id"],
        plan_id=plan["id"],
        active_until=ts(sub["current_period_end"]),
    )


async def test_pause_suspends_and_resume_restores(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan, customer, clock, sub = await _active(api, ["posts", "archive"])
    await advance(api, clock["id"], START + timedelta(days=10))
    ok(await api.post(f"/v1/subscriptions/{sub['id']}/pause", json={}))
    assert (await get_sub(api, sub["id"]))["status"] == "paused"
    assert await _grants(api, customer["id"]) == {}, "suspended while paused"
    assert not await entitled(api, customer["id"], "posts")

    await advance(api, clock["id"], START + timedelta(days=20))
    ok(await api.post(f"/v1/subscriptions/{sub['id']}/resume"))
    sub = await get_sub(api, sub["id"])
    assert sub["status"] == "active"
    await _assert_exactly(
        api,
        customer["id"],
        ["posts", "archive"],
        sub_id=sub["id"],
        plan_id=plan["id"],
        active_until=ts(sub["current_period_end"]),
    )
    timeline = await event_types(api, sub["id"])
    assert timeline.count("entitlement.revoked") == 2
    assert timeline.count("entitlement.granted") == 4


async def test_check_validates_its_query_and_needs_a_key(app_client: httpx.AsyncClient) -> None:
    api = app_client
    missing = await api.get("/v1/entitlements/check", params={"customer_id": "cus_x"})
    assert missing.status_code == 422
    assert missing.json()["error"] == {
        "code": "validation_error",
        "message": "query.feature: Field required",
    }
    too_long = await api.get(
        "/v1/entitlements/check", params={"customer_id": "c" * 201, "feature": "posts"}
    )
    assert too_long.status_code == 422
    assert too_long.json()["error"]["code"] == "validation_error"
    anonymous = await api.get(
        "/v1/entitlements/check",
        params={"customer_id": "cus_x", "feature": "posts"},
        headers={"Authorization": ""},
    )
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    nothing = await _check(api, "cus_nobody", "posts")
    assert nothing == {"entitled": False, "active_until": None}
