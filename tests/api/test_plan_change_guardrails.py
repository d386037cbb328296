"""Every plan-change guardrail answers with its HTTP status and code, and a rejected change
leaves no trace: no event, no invoice, the plan unchanged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx

from tests.api.billing_support import at, call, rejected, start_active, timeline
from tests.helpers import (
    advance,
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


async def _no_trace(
    api: httpx.AsyncClient, sub: dict[str, Any], attempt: Callable[[], Awaitable[None]]
) -> None:
    before = (
        await timeline(api, sub["id"]),
        await invoices(api, sub["id"]),
        await get_sub(api, sub["id"]),
    )
    await attempt()
    after = (
        await timeline(api, sub["id"]),
        await invoices(api, sub["id"]),
        await get_sub(api, sub["id"]),
    )
    assert after == before


async def test_same_plan_and_currency_mismatch(app_client: httpx.AsyncClient) -> None:
    api = app_client
    usd = await make_plan(api, amount=1000, currency="usd")
    eur = await make_plan(api, amount=2000, currency="eur")
    _, _, sub = await start_active(api, usd, at(2027, 8, 1))

    async def attempts() -> None:
        body = {"plan_id": usd["id"]}
        rejected(await call(api, sub["id"], "change_plan", body), 409, "same_plan")
        body = {"plan_id": eur["id"]}
        rejected(await call(api, sub["id"], "change_plan", body), 422, "currency_mismatch")
        body = {"plan_id": eur["id"], "preview": True}
        rejected(await call(api, sub["id"], "change_plan", body), 422, "currency_mismatch")

    await _no_trace(api, sub, attempts)


async def test_bad_requests_are_4xx_with_a_code(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=1000)
    other = await make_plan(api, amount=2000)
    _, _, sub = await start_active(api, plan, at(2027, 8, 1))

    async def attempts() -> None:
        for body, status, code in [
            ({"plan_id": "plan_nope"}, 404, "resource_missing"),
            ({"plan_id": other["id"], "when": "tomorrow"}, 422, "validation_error"),
            ({"plan_id": other["id"], "proration": "sometimes"}, 422, "validation_error"),
            ({"plan_id": other["id"], "preview": "maybe"}, 422, "validation_error"),
            ({"plan_id": other["id"], "extra": 1}, 422, "validation_error"),
            ({}, 422, "validation_error"),
        ]:
            rejected(await call(api, sub["id"], "change_plan", body), status, code)
        bad_json = await api.post(
            f"/v1/subscriptions/{sub['id']}/change_plan",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        rejected(bad_json, 400, "invalid_json")

    await _no_trace(api, sub, attempts)
    missing = await call(api, "sub_nope", "change_plan", {"plan_id": other["id"]})
    rejected(missing, 404, "resource_missing")


async def test_past_due_subscription_cannot_change_plan(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=1000, trial_days=3)
    bigger = await make_plan(api, amount=3000)
    customer = await make_customer(api, FAILING_CARD)
    start = at(2027, 8, 1)
    clock = await make_clock(api, start)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    await advance(api, clock["id"], start + timedelta(days=3, minutes=1))
    sub = await get_sub(api, sub["id"])
    assert sub["status"] == "past_due"

    async def attempts() -> None:
        body = {"plan_id": bigger["id"]}
        rejected(await call(api, sub["id"], "change_plan", body), 409, "subscription_past_due")
        rejected(await call(api, sub["id"], "pause"), 409, "subscription_not_pausable")

    await _no_trace(api, sub, attempts)


async def test_canceled_subscription_cannot_change(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=1000)
    bigger = await make_plan(api, amount=3000)
    _, _, sub = await start_active(api, plan, at(2027, 8, 1))
    ok(await call(api, sub["id"], "cancel", {"at_period_end": False}))

    async def attempts() -> None:
        body = {"plan_id": bigger["id"]}
        rejected(await call(api, sub["id"], "change_plan", body), 409, "subscription_canceled")
        rejected(await call(api, sub["id"], "pause"), 409, "subscription_canceled")
        rejected(await call(api, sub["id"], "resume"), 409, "subscription_canceled")

    await _no_trace(api, sub, attempts)


async def test_too_many_changes_per_period(app_client: httpx.AsyncClient) -> None:
    api = app_client
    top = await make_plan(api, amount=5000)
    lower = [await make_plan(api, amount=amount) for amount in (4000, 3000, 2000, 1000)]
    period_end = at(2027, 9, 1)
    _, clock, sub = await start_active(api, top, at(2027, 8, 1))
    for plan in lower[:3]:  # three scheduled downgrades (each replacing the last)
        ok(await call(api, sub["id"], "change_plan", {"plan_id": plan["id"]}))

    async def attempts() -> None:
        body = {"plan_id": lower[3]["id"]}
        message = rejected(await call(api, sub["id"], "change_plan", body), 409, "too_many_changes")
        assert "3" in message

    await _no_trace(api, sub, attempts)
    # Going back to the current plan (dropping the scheduled change) is always allowed.
    dropped = ok(await call(api, sub["id"], "change_plan", {"plan_id": top["id"]}))
    assert dropped["subscription"]["pending_change"] is None

    await advance(api, clock["id"], period_end)
    fresh = ok(await call(api, sub["id"], "change_plan", {"plan_id": lower[3]["id"]}))
    assert fresh["subscription"]["pending_change"]["plan_id"] == lower[3]["id"]


async def test_trial_changes_swap_the_plan_without_charging(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1000, trial_days=10, features=["posts"])
    yearly = await make_plan(api, amount=9000, interval="year", features=["posts", "vip"])
    eur = await make_plan(api, amount=1000, currency="eur")
    customer = await make_customer(api)
    start = at(2027, 8, 1)
    clock = await make_clock(api, start)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )

    async def attempts() -> None:
        rejected(
            await call(api, sub["id"], "change_plan", {"plan_id": plan["id"]}), 409, "same_plan"
        )
        rejected(
            await call(api, sub["id"], "change_plan", {"plan_id": eur["id"]}),
            422,
            "currency_mismatch",
        )

    await _no_trace(api, sub, attempts)
    trial_end = start + timedelta(days=10)
    preview = ok(
        await call(api, sub["id"], "change_plan", {"plan_id": yearly["id"], "preview": True})
    )["invoice_preview"]
    assert (preview["total"], preview["billing_reason"]) == (9000, "subscription_cycle")
    assert ts(preview["period_start"]) == trial_end
    changed = ok(await call(api, sub["id"], "change_plan", {"plan_id": yearly["id"]}))
    assert changed["invoice"] is None
    assert (changed["subscription"]["plan_id"], changed["subscription"]["status"]) == (
        yearly["id"],
        "trialing",
    )
    assert await invoices(api, sub["id"]) == []

    ok(await call(api, sub["id"], "change_plan", {"plan_id": plan["id"]}))
    ok(await call(api, sub["id"], "change_plan", {"plan_id": yearly["id"]}))

    async def fourth() -> None:
        body = {"plan_id": plan["id"]}
        rejected(await call(api, sub["id"], "change_plan", body), 409, "too_many_changes")

    await _no_trace(api, sub, fourth)

    await advance(api, clock["id"], trial_end)
    (bill,) = await invoices(api, sub["id"])
    assert (bill["total"], ts(bill["period_end"])) == (9000, at(2028, 8, 11))
    # The trial's changes do not count against the first paid period.
    ok(await call(api, sub["id"], "change_plan", {"plan_id": plan["id"]}))


async def test_declined_upgrade_charge_changes_nothing_but_is_recorded(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    basic = await make_plan(api, amount=1000, features=["posts"])
    pro = await make_plan(api, amount=3000, features=["posts", "archive"])
    customer, clock, sub = await start_active(api, basic, at(2027, 8, 1))
    await advance(api, clock["id"], at(2027, 8, 11))
    card = {"payment_method": FAILING_CARD}
    ok(await api.post(f"/v1/customers/{customer['id']}/payment_method", json=card))

    response = await call(api, sub["id"], "change_plan", {"plan_id": pro["id"]})
    rejected(response, 409, "payment_failed")
    after = await get_sub(api, sub["id"])
    assert after["plan_id"] == basic["id"]
    assert after["status"] == "active"
    first, declined = await invoices(api, sub["id"])
    assert after["latest_invoice_id"] == first["id"]
    assert (declined["billing_reason"], declined["status"]) == ("subscription_update", "void")
    assert [a["status"] for a in declined["attempts"]] == ["failed"]
    types = [e["type"] for e in await timeline(api, sub["id"])]
    assert types[-1] == "invoice.payment_failed"
    assert "subscription.plan_changed" not in types
