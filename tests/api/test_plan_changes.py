"""Plan changes through the HTTP API on test clocks: upgrades charged now with exact
proration, downgrades at period end, previews, deferred and no proration, leap years,
interval changes with a new anchor."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from tests.api.billing_support import (
    at,
    call,
    events_of,
    line_tuples,
    prorated,
    seconds,
    start_active,
    timeline,
)
from tests.helpers import advance, entitled, get_sub, invoices, make_plan, ok, ts


async def _change(api: httpx.AsyncClient, sub_id: str, **body: Any) -> dict[str, Any]:
    return ok(await call(api, sub_id, "change_plan", body))  # type: ignore[no-any-return]


async def test_upgrade_mid_period_charges_exact_proration_now(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    basic = await make_plan(api, amount=1000, features=["posts"])
    pro = await make_plan(api, amount=2500, features=["posts", "archive"])
    period_start, period_end = at(2027, 3, 1), at(2027, 4, 1)
    customer, clock, sub = await start_active(api, basic, period_start)
    assert not await entitled(api, customer["id"], "archive")

    moment = at(2027, 3, 11, 6, 30, 15)
    await advance(api, clock["id"], moment)
    period, remaining = seconds(period_start, period_end), seconds(moment, period_end)
    assert (period, remaining) == (2_678_400, 1_790_985)
    credit, debit = -prorated(1000, remaining, period), prorated(2500, remaining, period)
    assert (credit, debit) == (-669, 1672)  # 668.68 and 1671.69, each rounded

    result = await _change(api, sub["id"], plan_id=pro["id"])
    assert result["decision"] == {"kind": "upgrade", "when": "now", "proration": "always_invoice"}
    invoice = result["invoice"]
    assert invoice["status"] == "paid"
    assert invoice["billing_reason"] == "subscription_update"
    assert invoice["total"] == credit + debit == 1003
    assert line_tuples(invoice) == [
        ("proration", credit, moment, period_end),
        ("proration", debit, moment, period_end),
    ]
    assert [a["status"] for a in invoice["attempts"]] == ["succeeded"]
    assert invoice["attempts"][0]["amount"] == 1003

    changed = result["subscription"]
    assert changed["plan_id"] == pro["id"]
    assert ts(changed["current_period_start"]) == period_start
    assert ts(changed["current_period_end"]) == period_end, "an upgrade keeps the period"
    assert changed["latest_invoice_id"] == invoice["id"]
    assert await entitled(api, customer["id"], "archive"), "entitlements swap at once"
    assert (await get_sub(api, sub["id"]))["plan_id"] == pro["id"]

    bills = await invoices(api, sub["id"])
    assert [(b["billing_reason"], b["total"], b["status"]) for b in bills] == [
        ("subscription_create", 1000, "paid"),
        ("subscription_update", 1003, "paid"),
    ]
    paid = [e for e in await events_of(api, sub["id"], "invoice.paid")]
    assert paid[-1]["data"]["invoice_id"] == invoice["id"]
    assert paid[-1]["data"]["amount"] == 1003
    (changed_event,) = await events_of(api, sub["id"], "subscription.plan_changed")
    assert changed_event["data"]["from_plan"] == basic["id"]
    assert changed_event["data"]["to_plan"] == pro["id"]
    assert changed_event["data"]["kind"] == "upgrade"
    assert changed_event["data"]["invoice_id"] == invoice["id"]
    assert ts(changed_event["occurred_at"]) == moment
    granted = await events_of(api, sub["id"], "entitlement.granted")
    assert [e["data"]["feature"] for e in granted] == ["posts", "archive"]

    await advance(api, clock["id"], period_end)
    renewal = (await invoices(api, sub["id"]))[-1]
    assert (renewal["billing_reason"], renewal["total"]) == ("subscription_cycle", 2500)


async def test_downgrade_waits_for_period_end_and_can_be_replaced_or_dropped(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    pro = await make_plan(api, amount=3000, features=["posts", "archive"])
    basic = await make_plan(api, amount=1000, features=["posts"])
    lite = await make_plan(api, amount=500, features=["posts"])
    period_start, period_end = at(2027, 5, 10, 12), at(2027, 6, 10, 12)
    customer, clock, sub = await start_active(api, pro, period_start)
    await advance(api, clock["id"], at(2027, 5, 20))

    result = await _change(api, sub["id"], plan_id=basic["id"])
    assert result["decision"] == {"kind": "downgrade", "when": "period_end", "proration": "none"}
    assert result["invoice"] is None
    pending = result["subscription"]["pending_change"]
    assert pending["plan_id"] == basic["id"]
    assert ts(pending["effective_at"]) == period_end
    assert result["subscription"]["plan_id"] == pro["id"]
    assert (await get_sub(api, sub["id"]))["pending_change"]["plan_id"] == basic["id"]
    assert await entitled(api, customer["id"], "archive"), "old plan until the period end"
    assert len(await invoices(api, sub["id"])) == 1

    # Replace the scheduled change, then drop it by asking for the current plan.
    replaced = await _change(api, sub["id"], plan_id=lite["id"])
    assert replaced["subscription"]["pending_change"]["plan_id"] == lite["id"]
    # Previewing the drop shows the renewal at the current price and keeps the change.
    undo = await _change(api, sub["id"], plan_id=pro["id"], preview=True)
    assert line_tuples(undo["invoice_preview"]) == [
        ("subscription", 3000, period_end, at(2027, 7, 10, 12))
    ]
    assert (await get_sub(api, sub["id"]))["pending_change"]["plan_id"] == lite["id"]
    dropped = await _change(api, sub["id"], plan_id=pro["id"])
    assert dropped["subscription"]["pending_change"] is None
    assert dropped["subscription"]["plan_id"] == pro["id"]
    assert dropped["invoice"] is None
    scheduled = await events_of(api, sub["id"], "subscription.plan_change_scheduled")
    assert [(e["data"]["to_plan"], e["data"]["replaces"]) for e in scheduled] == [
        (basic["id"], None),
        (lite["id"], basic["id"]),
    ]
    (canceled,) = await events_of(api, sub["id"], "subscription.plan_change_canceled")
    assert canceled["data"]["plan_id"] == lite["id"]

    await _change(api, sub["id"], plan_id=basic["id"])
    await advance(api, clock["id"], period_end - timedelta(seconds=1))
    assert (await get_sub(api, sub["id"]))["plan_id"] == pro["id"]
    assert await entitled(api, customer["id"], "archive")

    await advance(api, clock["id"], period_end)
    after = await get_sub(api, sub["id"])
    assert after["plan_id"] == basic["id"]
    assert after["pending_change"] is None
    assert ts(after["current_period_start"]) == period_end
    assert ts(after["current_period_end"]) == at(2027, 7, 10, 12)
    assert not await entitled(api, customer["id"], "archive")
    assert await entitled(api, customer["id"], "posts")
    renewal = (await invoices(api, sub["id"]))[-1]
    assert (renewal["billing_reason"], renewal["status"], renewal["total"]) == (
        "subscription_cycle",
        "paid",
        1000,
    )
    assert line_tuples(renewal) == [("subscription", 1000, period_end, at(2027, 7, 10, 12))]
    changes = await events_of(api, sub["id"], "subscription.plan_changed")
    assert [(e["data"]["to_plan"], e["data"]["when"]) for e in changes] == [
        (basic["id"], "period_end")
    ]
    assert ts(changes[0]["occurred_at"]) == period_end
    revoked = await events_of(api, sub["id"], "entitlement.revoked")
    assert [e["data"]["feature"] for e in revoked] == ["archive"]


async def test_preview_returns_the_invoice_and_changes_nothing(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    basic = await make_plan(api, amount=1200, features=["posts"])
    pro = await make_plan(api, amount=4800, features=["posts", "archive"])
    lite = await make_plan(api, amount=600, features=["posts"])
    period_start, period_end = at(2027, 9, 1), at(2027, 10, 1)
    customer, clock, sub = await start_active(api, basic, period_start)
    moment = at(2027, 9, 21)  # 10 of 30 days left: exactly a third
    await advance(api, clock["id"], moment)
    before_events = await timeline(api, sub["id"])
    before_invoices = await invoices(api, sub["id"])

    result = await _change(api, sub["id"], plan_id=pro["id"], preview=True)
    assert "invoice" not in result
    preview = result["invoice_preview"]
    assert preview["id"] is None and preview["status"] == "draft"
    assert preview["billing_reason"] == "subscription_update"
    assert preview["total"] == 1200
    assert line_tuples(preview) == [
        ("proration", -400, moment, period_end),
        ("proration", 1600, moment, period_end),
    ]
    assert result["subscription"]["plan_id"] == basic["id"]

    downgrade = await _change(api, sub["id"], plan_id=lite["id"], preview=True)
    upcoming = downgrade["invoice_preview"]
    assert upcoming["billing_reason"] == "subscription_cycle"
    assert line_tuples(upcoming) == [("subscription", 600, period_end, at(2027, 11, 1))]
    assert downgrade["subscription"]["pending_change"] is None

    assert await timeline(api, sub["id"]) == before_events
    assert await invoices(api, sub["id"]) == before_invoices
    current = await get_sub(api, sub["id"])
    assert (current["plan_id"], current["pending_change"]) == (basic["id"], None)
    assert not await entitled(api, customer["id"], "archive")

    # Previews do not count toward the change limit, and the real change matches.
    real = await _change(api, sub["id"], plan_id=pro["id"])
    assert real["invoice"]["lines"] == preview["lines"]
    assert real["invoice"]["total"] == preview["total"]


async def test_create_prorations_defers_lines_to_renewal_and_none_skips_them(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    small = await make_plan(api, amount=997, features=["posts"])
    large = await make_plan(api, amount=2001, features=["posts", "archive"])
    period_start, half, period_end = at(2027, 4, 1), at(2027, 4, 16), at(2027, 5, 1)
    # Exactly half of the period remains: 498.5 and 1000.5 round half up (not to even).
    credit, debit = -499, 1001
    assert prorated(997, 1, 2) == 499 and prorated(2001, 1, 2) == 1001

    customer, clock, deferred = await start_active(api, small, period_start)
    other, _, skipped = await start_active(api, small, period_start)
    for sub in (deferred, skipped):
        await advance(api, sub["test_clock_id"], half)

    preview = await _change(
        api, deferred["id"], plan_id=large["id"], proration="create_prorations", preview=True
    )
    assert preview["invoice_preview"]["billing_reason"] == "subscription_cycle"
    assert preview["invoice_preview"]["total"] == credit + debit + 2001

    result = await _change(api, deferred["id"], plan_id=large["id"], proration="create_prorations")
    assert result["decision"]["proration"] == "create_prorations"
    assert result["invoice"] is None, "nothing is charged now"
    assert result["subscription"]["plan_id"] == large["id"]
    assert await entitled(api, customer["id"], "archive")
    assert len(await invoices(api, deferred["id"])) == 1
    (changed,) = await events_of(api, deferred["id"], "subscription.plan_changed")
    assert changed["data"]["deferred_lines"] == 2

    none = await _change(api, skipped["id"], plan_id=large["id"], proration="none")
    assert none["decision"]["proration"] == "none"
    assert none["invoice"] is None
    assert await entitled(api, other["id"], "archive")

    await advance(api, clock["id"], period_end)
    renewal = (await invoices(api, deferred["id"]))[-1]
    assert renewal["billing_reason"] == "subscription_cycle"
    assert line_tuples(renewal) == [
        ("proration", credit, half, period_end),
        ("proration", debit, half, period_end),
        ("subscription", 2001, period_end, at(2027, 6, 1)),
    ]
    assert (renewal["total"], renewal["status"]) == (2503, "paid")
    assert renewal["attempts"][0]["amount"] == 2503

    await advance(api, skipped["test_clock_id"], period_end)
    plain = await invoices(api, skipped["id"])
    assert [(b["billing_reason"], b["total"]) for b in plain] == [
        ("subscription_create", 997),
        ("subscription_cycle", 2001),
    ]
    assert line_tuples(plain[-1]) == [("subscription", 2001, period_end, at(2027, 6, 1))]

    # The deferred lines were billed once: the next renewal is the plain price.
    await advance(api, clock["id"], at(2027, 6, 1))
    assert (await invoices(api, deferred["id"]))[-1]["total"] == 2001


async def test_leap_year_monthly_change_from_a_jan_31_anchor(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    basic = await make_plan(api, amount=999, features=["posts"])
    plus = await make_plan(api, amount=2999, features=["posts", "archive"])
    anchor = at(2028, 1, 31, 10)
    _, clock, sub = await start_active(api, basic, anchor)
    assert ts(sub["current_period_end"]) == at(2028, 2, 29, 10), "clamped to Feb 29 (leap)"

    moment = at(2028, 2, 15, 17, 45, 30)
    await advance(api, clock["id"], moment)
    period = seconds(anchor, at(2028, 2, 29, 10))
    remaining = seconds(moment, at(2028, 2, 29, 10))
    assert period == 29 * 86_400
    assert remaining == 13 * 86_400 + 16 * 3600 + 14 * 60 + 30
    credit, debit = -prorated(999, remaining, period), prorated(2999, remaining, period)
    assert (credit, debit) == (-471, 1414)

    result = await _change(api, sub["id"], plan_id=plus["id"])
    assert line_tuples(result["invoice"]) == [
        ("proration", credit, moment, at(2028, 2, 29, 10)),
        ("proration", debit, moment, at(2028, 2, 29, 10)),
    ]
    assert result["invoice"]["total"] == 943

    await advance(api, clock["id"], at(2028, 2, 29, 10))
    sub = await get_sub(api, sub["id"])
    assert ts(sub["current_period_end"]) == at(2028, 3, 31, 10), "the anchor day comes back"
    await advance(api, clock["id"], at(2028, 3, 31, 10))
    sub = await get_sub(api, sub["id"])
    assert ts(sub["current_period_end"]) == at(2028, 4, 30, 10)
    bills = await invoices(api, sub["id"])
    assert [(ts(b["period_start"]), b["total"]) for b in bills] == [
        (anchor, 999),
        (moment, 943),
        (at(2028, 2, 29, 10), 2999),
        (at(2028, 3, 31, 10), 2999),
    ]


async def test_yearly_change_in_a_leap_year(app_client: httpx.AsyncClient) -> None:
    api = app_client
    yearly = await make_plan(api, amount=12000, interval="year", features=["posts"])
    premium = await make_plan(api, amount=30000, interval="year", features=["posts", "vip"])
    anchor, period_end = at(2028, 2, 29), at(2029, 2, 28)
    customer, clock, sub = await start_active(api, yearly, anchor)
    assert ts(sub["current_period_end"]) == period_end

    moment = at(2028, 9, 1, 8)
    await advance(api, clock["id"], moment)
    period, remaining = seconds(anchor, period_end), seconds(moment, period_end)
    assert period == 365 * 86_400
    credit, debit = -prorated(12000, remaining, period), prorated(30000, remaining, period)
    assert (credit, debit) == (-5907, 14767)

    result = await _change(api, sub["id"], plan_id=premium["id"])
    assert result["decision"]["kind"] == "upgrade"
    assert line_tuples(result["invoice"]) == [
        ("proration", credit, moment, period_end),
        ("proration", debit, moment, period_end),
    ]
    assert (result["invoice"]["total"], result["invoice"]["status"]) == (8860, "paid")
    assert await entitled(api, customer["id"], "vip")

    await advance(api, clock["id"], period_end)
    sub = await get_sub(api, sub["id"])
    assert ts(sub["current_period_end"]) == at(2030, 2, 28)
    renewal = (await invoices(api, sub["id"]))[-1]
    assert line_tuples(renewal) == [("subscription", 30000, period_end, at(2030, 2, 28))]


async def test_monthly_to_yearly_starts_a_new_period_now(app_client: httpx.AsyncClient) -> None:
    api = app_client
    monthly = await make_plan(api, amount=1000, features=["posts"])
    yearly = await make_plan(api, amount=10000, interval="year", features=["posts", "archive"])
    _, clock, sub = await start_active(api, monthly, at(2027, 7, 1))
    moment = at(2027, 7, 21)
    await advance(api, clock["id"], moment)
    credit = -prorated(1000, 11 * 86_400, 31 * 86_400)
    assert credit == -355

    result = await _change(api, sub["id"], plan_id=yearly["id"])
    assert result["decision"] == {
        "kind": "interval_change",
        "when": "now",
        "proration": "always_invoice",
    }
    invoice = result["invoice"]
    assert invoice["billing_reason"] == "subscription_update"
    assert line_tuples(invoice) == [
        ("proration", credit, moment, at(2027, 8, 1)),
        ("subscription", 10000, moment, at(2028, 7, 21)),
    ]
    assert (invoice["total"], invoice["status"]) == (9645, "paid")
    changed = result["subscription"]
    assert ts(changed["current_period_start"]) == moment
    assert ts(changed["current_period_end"]) == at(2028, 7, 21)
    assert ts(changed["billing_cycle_anchor"]) == moment

    await advance(api, clock["id"], at(2027, 8, 2))
    assert len(await invoices(api, sub["id"])) == 2, "the old monthly renewal is gone"
    await advance(api, clock["id"], at(2028, 7, 21))
    renewal = (await invoices(api, sub["id"]))[-1]
    assert line_tuples(renewal) == [("subscription", 10000, at(2028, 7, 21), at(2029, 7, 21))]


async def test_yearly_to_monthly_puts_the_net_credit_in_the_balance(
    app_client: httpx.AsyncClient,
) -> None:
    """A change whose credit exceeds its charge never issues a negative invoice: the rest
    goes to the customer's balance, which the next invoices use until it is used up."""
    api = app_client
    yearly = await make_plan(api, amount=12000, interval="year", features=["posts"])
    monthly = await make_plan(api, amount=5000, features=["posts"])
    customer, clock, sub = await start_active(api, yearly, at(2027, 1, 1))
    moment = at(2027, 3, 15)  # day 73 of 365: 292 days, 80 % of the year, remain
    await advance(api, clock["id"], moment)

    result = await _change(api, sub["id"], plan_id=monthly["id"])
    invoice = result["invoice"]
    assert line_tuples(invoice) == [
        ("proration", -9600, moment, at(2028, 1, 1)),
        ("subscription", 5000, moment, at(2027, 4, 15)),
        ("balance", 4600, moment, moment),
    ]
    assert (invoice["total"], invoice["status"]) == (0, "paid")
    assert invoice["attempts"][0]["stripe_payment_intent_id"] is None
    balance = ok(await api.get(f"/v1/customers/{customer['id']}"))["balances"]
    assert balance == {"usd": 4600}

    await advance(api, clock["id"], at(2027, 4, 15))
    second = (await invoices(api, sub["id"]))[-1]
    assert [(kind, amount) for kind, amount, _, _ in line_tuples(second)] == [
        ("subscription", 5000),
        ("balance", -4600),
    ]
    assert (second["total"], second["status"]) == (400, "paid")
    assert second["attempts"][0]["amount"] == 400
    await advance(api, clock["id"], at(2027, 5, 15))
    assert (await invoices(api, sub["id"]))[-1]["total"] == 5000


async def test_scheduled_changes_keep_the_anchor_unless_the_interval_changes(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    monthly = await make_plan(api, amount=2000, features=["posts"])
    cheaper = await make_plan(api, amount=1000, features=["posts"])
    yearly = await make_plan(api, amount=15000, interval="year", features=["posts"])

    # Same interval: the Jan 31 anchor survives the change (Feb 29 -> Mar 31, not Mar 29).
    _, clock, sub = await start_active(api, monthly, at(2028, 1, 31))
    await _change(api, sub["id"], plan_id=cheaper["id"])
    await advance(api, clock["id"], at(2028, 2, 29))
    sub = await get_sub(api, sub["id"])
    assert (sub["plan_id"], ts(sub["current_period_end"])) == (cheaper["id"], at(2028, 3, 31))
    assert ts(sub["billing_cycle_anchor"]) == at(2028, 1, 31)

    # Another interval at period end: periods restart at the change (a full year from then).
    _, clock, sub = await start_active(api, monthly, at(2028, 1, 10))
    result = await _change(api, sub["id"], plan_id=yearly["id"], when="period_end")
    assert result["decision"] == {
        "kind": "interval_change",
        "when": "period_end",
        "proration": "none",
    }
    preview = await _change(api, sub["id"], plan_id=cheaper["id"], preview=True)
    assert preview["subscription"]["pending_change"]["plan_id"] == yearly["id"]
    await advance(api, clock["id"], at(2028, 2, 10))
    sub = await get_sub(api, sub["id"])
    assert ts(sub["current_period_start"]) == at(2028, 2, 10)
    assert ts(sub["current_period_end"]) == at(2029, 2, 10)
    renewal = (await invoices(api, sub["id"]))[-1]
    assert line_tuples(renewal) == [("subscription", 15000, at(2028, 2, 10), at(2029, 2, 10))]
