"""Seats and several items per subscription through the real stack (API, workflow,
localstripe, PostgreSQL) on test clocks, with the worked numbers of issue #18: seats up
mid-period in a 30-day and a 31-day month, seats down now into the balance and its use on
the next invoice, one item up and one down in the same change, a yearly subscription of
two items in a leap year, a change at the period boundary."""

from __future__ import annotations

from typing import Any

import httpx
from temporalio.client import Client

from api import lifecycle
from domain.contracts import PlanSnapshot
from domain.items import legacy_item_id
from tests.api.billing_support import at, call, events_of, rejected
from tests.conftest import Stack
from tests.helpers import (
    advance,
    entitled,
    get_sub,
    invoices,
    make_clock,
    make_customer,
    make_plan,
    ok,
    subscribe,
)
from workflows.messages import SubscriptionInput

X, DASH = "\u00d7", "\u2013"


def lines(invoice: dict[str, Any]) -> list[tuple[str, int, str]]:
    return [(li["kind"], li["amount"], li["description"]) for li in invoice["lines"]]


def amounts(invoice: dict[str, Any]) -> list[tuple[str, int]]:
    return [(li["kind"], li["amount"]) for li in invoice["lines"]]


def quantities(sub: dict[str, Any]) -> list[tuple[str, int]]:
    return [(item["plan_id"], item["quantity"]) for item in sub["items"]]


async def _update(api: httpx.AsyncClient, sub_id: str, **body: Any) -> dict[str, Any]:
    return ok(await call(api, sub_id, "update_items", body))  # type: ignore[no-any-return]


async def _seats(
    api: httpx.AsyncClient, items: list[dict[str, Any]], start: Any, card: str = "pm_card_visa"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    customer = await make_customer(api, card)
    clock = await make_clock(api, start)
    sub = await subscribe(api, customer_id=customer["id"], items=items, test_clock_id=clock["id"])
    return customer, clock, sub


async def test_seats_up_mid_period_in_a_30_day_month(app_client: httpx.AsyncClient) -> None:
    api = app_client
    insider = await make_plan(api, name="Insider", amount=799, features=["posts"])
    _, clock, sub = await _seats(api, [{"plan_id": insider["id"], "quantity": 3}], at(2027, 6, 1))
    assert sub["status"] == "active"
    assert quantities(sub) == [(insider["id"], 3)]
    item_id = sub["items"][0]["id"]
    assert item_id.startswith("si_")
    (first,) = await invoices(api, sub["id"])
    assert lines(first) == [("subscription", 2397, f"3 {X} Insider, Jun 1 {DASH} Jul 1 2027")]

    await advance(api, clock["id"], at(2027, 6, 16))
    body = {"items": [{"plan_id": insider["id"], "quantity": 5}]}
    preview = await _update(api, sub["id"], **body, preview=True)
    assert quantities(preview["subscription"]) == [(insider["id"], 3)], "a preview changes nothing"
    # 15 of 30 days left: 2397 x 1/2 = 1198.5 -> 1199, 3995 x 1/2 = 1997.5 -> 1998.
    expected = [
        ("proration", -1199, f"Unused time on 3 {X} Insider, Jun 16 {DASH} Jul 1 2027"),
        ("proration", 1998, f"Remaining time on 5 {X} Insider, Jun 16 {DASH} Jul 1 2027"),
    ]
    assert lines(preview["invoice_preview"]) == expected
    result = await _update(api, sub["id"], **body)
    assert result["decision"] == {"kind": "upgrade", "when": "now", "proration": "always_invoice"}
    invoice = result["invoice"]
    assert lines(invoice) == expected
    assert (invoice["total"], invoice["status"]) == (799, "paid")
    assert invoice["attempts"][0]["amount"] == 799
    changed = result["subscription"]
    assert changed["items"] == [{"id": item_id, "plan_id": insider["id"], "quantity": 5}]
    assert (await get_sub(api, sub["id"]))["items"] == changed["items"]
    (updated,) = await events_of(api, sub["id"], "subscription.updated")
    assert [i["quantity"] for i in updated["data"]["items_before"]] == [3]
    assert [i["quantity"] for i in updated["data"]["items_after"]] == [5]
    assert updated["data"]["invoice_id"] == invoice["id"]

    await advance(api, clock["id"], at(2027, 7, 1))
    renewal = (await invoices(api, sub["id"]))[-1]
    assert lines(renewal) == [("subscription", 3995, f"5 {X} Insider, Jul 1 {DASH} Aug 1 2027")]
    assert renewal["status"] == "paid"


async def test_seats_up_mid_period_in_a_31_day_month(app_client: httpx.AsyncClient) -> None:
    api = app_client
    insider = await make_plan(api, name="Insider", amount=799)
    _, clock, sub = await _seats(api, [{"plan_id": insider["id"], "quantity": 3}], at(2027, 7, 1))
    await advance(api, clock["id"], at(2027, 7, 21))
    result = await _update(api, sub["id"], items=[{"plan_id": insider["id"], "quantity": 5}])
    # 11 of 31 days left: 2397 x 11/31 = 850.58 -> 851, 3995 x 11/31 = 1417.58 -> 1418.
    assert amounts(result["invoice"]) == [("proration", -851), ("proration", 1418)]
    assert result["invoice"]["total"] == 567


async def test_seats_down_now_go_to_the_balance_and_pay_the_next_invoice(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    insider = await make_plan(api, name="Insider", amount=799)
    customer, clock, sub = await _seats(
        api, [{"plan_id": insider["id"], "quantity": 5}], at(2027, 6, 1)
    )
    await advance(api, clock["id"], at(2027, 6, 16))
    body = {"items": [{"plan_id": insider["id"], "quantity": 2}], "when": "now"}
    result = await _update(api, sub["id"], **body)
    assert result["decision"]["kind"] == "downgrade"
    invoice = result["invoice"]
    # -1998 (3995 x 1/2 = 1997.5, rounded away from zero) + 799: a net credit of 1199.
    assert amounts(invoice) == [("proration", -1998), ("proration", 799), ("balance", 1199)]
    assert (invoice["total"], invoice["status"]) == (0, "paid")
    assert invoice["attempts"][0]["stripe_payment_intent_id"] is None
    shown = ok(await api.get(f"/v1/customers/{customer['id']}"))
    assert shown["balances"] == {"usd": 1199}

    await advance(api, clock["id"], at(2027, 7, 1))
    renewal = (await invoices(api, sub["id"]))[-1]
    assert amounts(renewal) == [("subscription", 1598), ("balance", -1199)]
    assert (renewal["total"], renewal["status"]) == (399, "paid")
    assert renewal["attempts"][0]["amount"] == 399
    ledger = ok(await api.get(f"/v1/customers/{customer['id']}/balance_transactions"))
    assert [(t["type"], t["amount"], t["invoice_id"]) for t in ledger] == [
        ("proration_credit", 1199, invoice["id"]),
        ("applied_to_invoice", -1199, renewal["id"]),
    ]
    assert ok(await api.get(f"/v1/customers/{customer['id']}"))["balances"] == {"usd": 0}
    updates = ok(await api.get("/v1/events", params={"customer_id": customer["id"]}))
    assert [e["data"]["balance"] for e in updates if e["type"] == "customer.balance_updated"] == [
        1199,
        0,
    ]


async def test_seats_down_wait_for_the_period_end_and_renew_with_no_proration(
    app_client: httpx.AsyncClient,
) -> None:
    """The change at the period boundary: the renewal bills the new items, nothing prorated."""
    api = app_client
    insider = await make_plan(api, name="Insider", amount=799)
    _, clock, sub = await _seats(api, [{"plan_id": insider["id"], "quantity": 5}], at(2027, 6, 1))
    await advance(api, clock["id"], at(2027, 6, 16))
    result = await _update(api, sub["id"], items=[{"plan_id": insider["id"], "quantity": 2}])
    assert result["decision"] == {"kind": "downgrade", "when": "period_end", "proration": "none"}
    assert result["invoice"] is None
    pending = result["subscription"]["pending_change"]
    assert pending["effective_at"].startswith("2027-07-01T00:00:00")
    assert [i["quantity"] for i in pending["items"]] == [2]
    assert quantities(result["subscription"]) == [(insider["id"], 5)]

    await advance(api, clock["id"], at(2027, 7, 1))
    after = await get_sub(api, sub["id"])
    assert quantities(after) == [(insider["id"], 2)] and after["pending_change"] is None
    renewal = (await invoices(api, sub["id"]))[-1]
    assert lines(renewal) == [("subscription", 1598, f"2 {X} Insider, Jul 1 {DASH} Aug 1 2027")]
    assert len(await invoices(api, sub["id"])) == 2, "no proration invoice"


async def test_one_item_up_and_one_down_in_the_same_change(app_client: httpx.AsyncClient) -> None:
    api = app_client
    insider = await make_plan(api, name="Insider", amount=799, features=["posts"])
    patron = await make_plan(api, name="Patron", amount=1500, features=["merch"])
    customer, clock, sub = await _seats(
        api,
        [{"plan_id": insider["id"], "quantity": 3}, {"plan_id": patron["id"], "quantity": 2}],
        at(2027, 6, 1),
    )
    (first,) = await invoices(api, sub["id"])
    assert amounts(first) == [("subscription", 2397), ("subscription", 3000)]
    # Entitlements: the union of the items' features.
    assert await entitled(api, customer["id"], "posts")
    assert await entitled(api, customer["id"], "merch")

    await advance(api, clock["id"], at(2027, 6, 16))
    new = [{"plan_id": insider["id"], "quantity": 5}, {"plan_id": patron["id"], "quantity": 1}]
    result = await _update(api, sub["id"], items=new)
    # 5397 -> 5495 a month: an increase, invoiced now.
    assert result["decision"]["kind"] == "upgrade"
    assert lines(result["invoice"]) == [
        ("proration", -1199, f"Unused time on 3 {X} Insider, Jun 16 {DASH} Jul 1 2027"),
        ("proration", 1998, f"Remaining time on 5 {X} Insider, Jun 16 {DASH} Jul 1 2027"),
        ("proration", -1500, f"Unused time on 2 {X} Patron, Jun 16 {DASH} Jul 1 2027"),
        ("proration", 750, f"Remaining time on Patron, Jun 16 {DASH} Jul 1 2027"),
    ]
    assert result["invoice"]["total"] == 49
    # Dropping the Patron item ends its feature.
    await _update(api, sub["id"], items=[{"plan_id": insider["id"], "quantity": 5}], when="now")
    assert not await entitled(api, customer["id"], "merch")
    assert await entitled(api, customer["id"], "posts")


async def test_yearly_items_in_a_leap_year(app_client: httpx.AsyncClient) -> None:
    api = app_client
    team = await make_plan(api, name="Team", amount=12_000, interval="year")
    storage = await make_plan(api, name="Storage", amount=2_400, interval="year")
    _, clock, sub = await _seats(
        api,
        [{"plan_id": team["id"], "quantity": 10}, {"plan_id": storage["id"]}],
        at(2028, 1, 1),
    )
    (first,) = await invoices(api, sub["id"])
    assert lines(first) == [
        ("subscription", 120_000, f"10 {X} Team, Jan 1 2028 {DASH} Jan 1 2029"),
        ("subscription", 2_400, f"Storage, Jan 1 2028 {DASH} Jan 1 2029"),
    ]
    # 2028 has 366 days; from Mar 1 (after Feb 29) 306 are left.
    await advance(api, clock["id"], at(2028, 3, 1))
    items = [{"plan_id": team["id"], "quantity": 12}, {"plan_id": storage["id"]}]
    result = await _update(api, sub["id"], items=items)
    # 120000 x 306/366 = 100327.87 -> 100328; 144000 x 306/366 = 120393.44 -> 120393.
    assert amounts(result["invoice"]) == [("proration", -100_328), ("proration", 120_393)]
    assert result["invoice"]["total"] == 20_065
    await advance(api, clock["id"], at(2029, 1, 1))
    assert amounts((await invoices(api, sub["id"]))[-1]) == [
        ("subscription", 144_000),
        ("subscription", 2_400),
    ]


async def test_a_declined_increase_leaves_the_items_unchanged(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    insider = await make_plan(api, amount=799)
    customer, clock, sub = await _seats(
        api, [{"plan_id": insider["id"], "quantity": 2}], at(2027, 6, 1)
    )
    cards = f"/v1/customers/{customer['id']}/payment_method"
    ok(await api.post(cards, json={"payment_method": "pm_card_chargeCustomerFail"}))
    await advance(api, clock["id"], at(2027, 6, 10))
    refused = await call(
        api, sub["id"], "update_items", {"items": [{"plan_id": insider["id"], "quantity": 4}]}
    )
    rejected(refused, 409, "payment_failed")
    assert quantities(await get_sub(api, sub["id"])) == [(insider["id"], 2)]
    assert (await invoices(api, sub["id"]))[-1]["status"] == "void"

    # Past due (the renewal is declined): an increase is refused, a decrease is not.
    await advance(api, clock["id"], at(2027, 7, 1))
    assert (await get_sub(api, sub["id"]))["status"] == "past_due"
    up = {"items": [{"plan_id": insider["id"], "quantity": 3}]}
    rejected(await call(api, sub["id"], "update_items", up), 409, "subscription_past_due")
    down = {"items": [{"plan_id": insider["id"], "quantity": 1}]}
    assert (await _update(api, sub["id"], **down))["decision"]["when"] == "period_end"


async def test_during_a_trial_items_change_now_without_proration(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    insider = await make_plan(api, name="Insider", amount=799, trial_days=14)
    customer, clock = await make_customer(api), await make_clock(api, at(2027, 6, 1))
    sub = await subscribe(
        api,
        customer_id=customer["id"],
        plan_id=insider["id"],
        quantity=3,
        test_clock_id=clock["id"],
    )
    assert sub["status"] == "trialing" and quantities(sub) == [(insider["id"], 3)]
    result = await _update(api, sub["id"], items=[{"plan_id": insider["id"], "quantity": 6}])
    assert result["invoice"] is None
    assert result["decision"] == {"kind": "upgrade", "when": "now", "proration": "none"}
    assert quantities(result["subscription"]) == [(insider["id"], 6)]
    await advance(api, clock["id"], at(2027, 6, 15))
    (first,) = await invoices(api, sub["id"])
    assert lines(first) == [("subscription", 4794, f"6 {X} Insider, Jun 15 {DASH} Jul 15 2027")]


async def test_item_sets_that_are_not_one(app_client: httpx.AsyncClient) -> None:
    api = app_client
    usd = await make_plan(api, amount=100)
    eur = await make_plan(api, amount=100, currency="eur")
    yearly = await make_plan(api, amount=100, interval="year")
    customer = await make_customer(api)

    async def create(**body: Any) -> httpx.Response:
        return await api.post("/v1/subscriptions", json={"customer_id": customer["id"], **body})

    both = [{"plan_id": usd["id"]}, {"plan_id": eur["id"]}]
    rejected(await create(items=both), 422, "currency_mismatch")
    mixed = [{"plan_id": usd["id"]}, {"plan_id": yearly["id"]}]
    rejected(await create(items=mixed), 422, "interval_mismatch")
    twice = [{"plan_id": usd["id"]}, {"plan_id": usd["id"], "quantity": 2}]
    rejected(await create(items=twice), 422, "invalid_items")
    rejected(await create(items=[{"plan_id": usd["id"], "quantity": 0}]), 422, "validation_error")
    rejected(await create(plan_id=usd["id"], quantity=10_001), 422, "validation_error")
    rejected(
        await create(plan_id=usd["id"], items=[{"plan_id": usd["id"]}]), 422, "validation_error"
    )
    rejected(
        await create(items=[{"plan_id": f"plan_{n:04d}"} for n in range(21)]),
        422,
        "validation_error",
    )
    rejected(await create(items=[{"plan_id": "plan_missing"}]), 404, "resource_missing")

    sub = await subscribe(api, customer_id=customer["id"], plan_id=usd["id"], quantity=2)
    assert quantities(sub) == [(usd["id"], 2)]
    same = {"items": [{"plan_id": usd["id"], "quantity": 2}]}
    rejected(await call(api, sub["id"], "update_items", same), 409, "same_items")
    rejected(
        await call(api, sub["id"], "update_items", {"items": [{"plan_id": eur["id"]}]}),
        422,
        "currency_mismatch",
    )


async def test_deferred_and_unprorated_changes_and_the_change_limit(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    insider = await make_plan(api, name="Insider", amount=799)
    patron = await make_plan(api, name="Patron", amount=1500)
    _, clock, sub = await _seats(api, [{"plan_id": insider["id"], "quantity": 3}], at(2027, 6, 1))
    await advance(api, clock["id"], at(2027, 6, 16))
    # create_prorations: applied now, the lines wait for the renewal.
    deferred = await _update(
        api,
        sub["id"],
        items=[{"plan_id": insider["id"], "quantity": 5}],
        proration="create_prorations",
    )
    assert deferred["invoice"] is None
    assert quantities(deferred["subscription"]) == [(insider["id"], 5)]
    # none: applied now, nothing prorated.
    plain = await _update(
        api,
        sub["id"],
        items=[{"plan_id": insider["id"], "quantity": 6}],
        proration="none",
    )
    assert plain["invoice"] is None and plain["decision"]["proration"] == "none"
    # A plan change counts too: the third change this period is the last one allowed.
    ok(await call(api, sub["id"], "change_plan", {"plan_id": patron["id"]}))
    refused = await call(
        api, sub["id"], "update_items", {"items": [{"plan_id": patron["id"], "quantity": 9}]}
    )
    rejected(refused, 409, "too_many_changes")
    after = await get_sub(api, sub["id"])
    # The plan change moved the first item to Patron in its quantity.
    assert quantities(after) == [(patron["id"], 6)] and after["plan_id"] == patron["id"]

    await advance(api, clock["id"], at(2027, 7, 1))
    renewal = (await invoices(api, sub["id"]))[-1]
    # The deferred lines (3 -> 5 seats), then the period: 6 Patron seats.
    assert amounts(renewal) == [
        ("proration", -1199),
        ("proration", 1998),
        ("subscription", 9000),
    ]


async def test_a_pending_decrease_is_replaced_or_dropped(app_client: httpx.AsyncClient) -> None:
    api = app_client
    insider = await make_plan(api, name="Insider", amount=799)
    _, clock, sub = await _seats(api, [{"plan_id": insider["id"], "quantity": 5}], at(2027, 6, 1))
    first = await _update(api, sub["id"], items=[{"plan_id": insider["id"], "quantity": 2}])
    assert [i["quantity"] for i in first["subscription"]["pending_change"]["items"]] == [2]
    second = await _update(api, sub["id"], items=[{"plan_id": insider["id"], "quantity": 4}])
    assert [i["quantity"] for i in second["subscription"]["pending_change"]["items"]] == [4]
    dropped = await _update(api, sub["id"], items=[{"plan_id": insider["id"], "quantity": 5}])
    assert dropped["subscription"]["pending_change"] is None
    types = [e["type"] for e in await events_of(api, sub["id"], "subscription.update_canceled")]
    assert types == ["subscription.update_canceled"]
    await advance(api, clock["id"], at(2027, 7, 1))
    assert amounts((await invoices(api, sub["id"]))[-1]) == [("subscription", 3995)]


async def test_a_subscription_started_without_items_bills_its_plan_as_one_item(
    app_client: httpx.AsyncClient, stack: Stack, temporal_client: Client
) -> None:
    """What a subscription from before items looks like to this code: an input with a plan
    and no items. Its one item has the id the migration gives it, and it changes like any."""
    api = app_client
    insider = await make_plan(api, name="Insider", amount=799)
    customer, clock = await make_customer(api), await make_clock(api, at(2027, 6, 1))
    inp = SubscriptionInput(
        subscription_id=f"sub_legacy{customer['id'][-12:]}",
        customer_id=customer["id"],
        plan=PlanSnapshot.model_validate({**insider, "plan_id": insider["id"]}),
        test_clock_id=clock["id"],
        clock_now=at(2027, 6, 1),
        customer_email=customer["email"],
        policy=lifecycle.billing_policy(stack.settings),
    )
    view = await lifecycle.start_subscription(temporal_client, stack.settings, inp)
    assert view.status == "active"
    legacy = legacy_item_id(inp.subscription_id)
    sub = await get_sub(api, inp.subscription_id)
    assert sub["items"] == [{"id": legacy, "plan_id": insider["id"], "quantity": 1}]
    await advance(api, clock["id"], at(2027, 6, 16))
    result = await _update(
        api, inp.subscription_id, items=[{"plan_id": insider["id"], "quantity": 3}]
    )
    # 15 of 30 days: -400 (399.5 rounded away from zero) and +1199 (1198.5).
    assert amounts(result["invoice"]) == [("proration", -400), ("proration", 1199)]
    assert result["subscription"]["items"] == [
        {"id": legacy, "plan_id": insider["id"], "quantity": 3}
    ]
