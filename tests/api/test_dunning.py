"""Failed payments: `incomplete` first charges, renewal dunning on test clocks, support retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.helpers import (
    advance,
    entitled,
    event_types,
    eventually,
    get_sub,
    invoices,
    make_clock,
    make_customer,
    make_plan,
    ok,
    subscribe,
    ts,
)

FAILING_CARD = "pm_card_chargeCustomerFail"  # attaches fine, every charge is declined
START = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)


async def _key(api: httpx.AsyncClient, role: str) -> dict[str, str]:
    created = ok(await api.post("/v1/api_keys", json={"role": role}), 201)
    return {"Authorization": f"Bearer {created['key']}", "x-key-id": created["id"]}


async def _active_then_failing(
    api: httpx.AsyncClient,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An active subscription whose card starts failing; the clock is at the period end."""
    plan = await make_plan(api, amount=1200, features=["posts", "archive"])
    customer = await make_customer(api, "pm_card_visa")
    clock = await make_clock(api, START)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    assert sub["status"] == "active"
    ok(
        await api.post(
            f"/v1/customers/{customer['id']}/payment_method", json={"payment_method": FAILING_CARD}
        )
    )
    await advance(api, clock["id"], datetime(2027, 4, 1, 10, 0, tzinfo=UTC))
    return customer, clock, await get_sub(api, sub["id"])


async def test_renewal_failure_retries_on_schedule_then_cancels(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    customer, clock, sub = await _active_then_failing(api)
    failed_at = datetime(2027, 4, 1, 10, 0, tzinfo=UTC)
    assert sub["status"] == "past_due"
    assert sub["dunning"]["attempts"] == 1
    assert ts(sub["dunning"]["next_retry_at"]) == failed_at + timedelta(hours=24)
    assert await entitled(api, customer["id"], "archive"), "entitlements are kept during dunning"

    await advance(api, clock["id"], failed_at + timedelta(hours=24, minutes=1))
    sub = await get_sub(api, sub["id"])
    assert sub["status"] == "past_due"
    assert sub["dunning"]["attempts"] == 2
    assert ts(sub["dunning"]["next_retry_at"]) == failed_at + timedelta(hours=48)

    await advance(api, clock["id"], failed_at + timedelta(days=15))
    sub = await get_sub(api, sub["id"])
    assert sub["status"] == "canceled"
    assert not await entitled(api, customer["id"], "archive")
    bills = await invoices(api, sub["id"])
    renewal = bills[-1]
    assert renewal["status"] == "uncollectible"
    attempts = renewal["attempts"]
    assert [a["attempt_number"] for a in attempts] == list(range(1, 10)), "1 + 8 retries"
    assert all(a["status"] == "failed" for a in attempts)
    assert len({a["idempotency_key"] for a in attempts}) == 9
    timeline = await event_types(api, sub["id"])
    assert timeline.count("invoice.payment_failed") == 9
    assert "subscription.past_due" in timeline
    assert timeline[-1] in ("subscription.canceled", "entitlement.revoked")
    assert "entitlement.revoked" in timeline


async def test_new_payment_method_mid_dunning_pays_at_once(app_client: httpx.AsyncClient) -> None:
    api = app_client
    customer, _clock, sub = await _active_then_failing(api)
    assert sub["status"] == "past_due"
    ok(
        await api.post(
            f"/v1/customers/{customer['id']}/payment_method",
            json={"payment_method": "pm_card_visa"},
        )
    )
    sub = await _wait_status(api, sub["id"], "active")
    assert sub["dunning"]["attempts"] == 0
    renewal = (await invoices(api, sub["id"]))[-1]
    assert renewal["status"] == "paid"
    assert [a["status"] for a in renewal["attempts"]] == ["failed", "succeeded"]
    assert "subscription.recovered" in await event_types(api, sub["id"])


async def test_support_retry_payment_and_role_checks(app_client: httpx.AsyncClient) -> None:
    api = app_client
    _customer, _clock, sub = await _active_then_failing(api)
    support = await _key(api, "support")
    product = await _key(api, "product")
    path = f"/v1/subscriptions/{sub['id']}/retry_payment"

    denied = await api.post(path, headers={"Authorization": product["Authorization"]})
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "forbidden"

    outcome = ok(await api.post(path, headers={"Authorization": support["Authorization"]}))
    assert outcome["status"] == "failed"
    assert outcome["attempt_number"] == 2
    assert outcome["failure_code"] == "card_declined"
    events = ok(await api.get("/v1/events", params={"subscription_id": sub["id"]}))
    failures = [e for e in events if e["type"] == "invoice.payment_failed"]
    assert failures[-1]["actor"] == f"key:{support['x-key-id']}"

    active = await subscribe(
        api, customer_id=(await make_customer(api))["id"], plan_id=(await make_plan(api))["id"]
    )
    nothing = await api.post(
        f"/v1/subscriptions/{active['id']}/retry_payment",
        headers={"Authorization": support["Authorization"]},
    )
    assert nothing.status_code == 409
    assert nothing.json()["error"]["code"] == "nothing_to_retry"


async def test_first_charge_failure_is_incomplete_until_paid(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=900, features=["posts"])
    customer = await make_customer(api, FAILING_CARD)
    clock = await make_clock(api, START)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    assert sub["status"] == "incomplete"
    assert not await entitled(api, customer["id"], "posts")
    ok(
        await api.post(
            f"/v1/customers/{customer['id']}/payment_method",
            json={"payment_method": "pm_card_visa"},
        )
    )
    sub = await _wait_status(api, sub["id"], "active")
    assert await entitled(api, customer["id"], "posts")
    assert [i["status"] for i in await invoices(api, sub["id"])] == ["paid"]


async def test_unpaid_first_charge_expires_after_23_hours(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=900)
    customer = await make_customer(api, FAILING_CARD)
    clock = await make_clock(api, START)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    await advance(api, clock["id"], START + timedelta(hours=22))
    assert (await get_sub(api, sub["id"]))["status"] == "incomplete"
    await advance(api, clock["id"], START + timedelta(hours=23))
    sub = await get_sub(api, sub["id"])
    assert sub["status"] == "incomplete_expired"
    assert [i["status"] for i in await invoices(api, sub["id"])] == ["void"]


async def _wait_status(api: httpx.AsyncClient, sub_id: str, status: str) -> dict[str, Any]:
    """Signals are asynchronous: poll the read model briefly."""
    return await eventually(
        lambda: get_sub(api, sub_id), lambda sub: sub["status"] == status, what=status
    )
