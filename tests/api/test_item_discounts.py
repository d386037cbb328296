"""A coupon on a subscription of several items, through the real stack on a test clock, with
worked numbers: the discount takes only the lines of its plans, per-item proration is priced
on the discounted item totals, the balance comes after the discount (at most what is left,
a zero total paid without Stripe), and redeeming looks at every item and their total.

Expected amounts are worked out here by hand (halves up), not with `domain/`."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.api.billing_support import at, call, prorated, rejected, seconds
from tests.helpers import advance, invoices, make_clock, make_customer, make_plan, ok


async def coupon(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    payload = {"name": f"Deal {uuid.uuid4().hex[:6]}", **body}
    return ok(await api.post("/v1/coupons", json=payload), 201)  # type: ignore[no-any-return]


def kinds_and_amounts(invoice: dict[str, Any]) -> list[tuple[str, int]]:
    return [(line["kind"], line["amount"]) for line in invoice["lines"]]


async def billed(api: httpx.AsyncClient, sub_id: str) -> list[dict[str, Any]]:
    """The subscription's invoices, oldest first."""
    return sorted(await invoices(api, sub_id), key=lambda i: (i["created_at"], i["id"]))


async def test_a_coupon_on_one_plan_of_a_two_item_subscription(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    seat = await make_plan(api, amount=1000)
    addon = await make_plan(api, amount=500)
    deal = await coupon(api, percent_off=25, duration="forever", applies_to_plans=[seat["id"]])
    customer = await make_customer(api)
    jan, feb, mar, apr = at(2031, 1, 1), at(2031, 2, 1), at(2031, 3, 1), at(2031, 4, 1)
    clock = await make_clock(api, jan)
    items = [{"plan_id": seat["id"], "quantity": 2}, {"plan_id": addon["id"]}]
    sub = ok(
        await api.post(
            "/v1/subscriptions",
            json={
                "customer_id": customer["id"],
                "items": items,
                "test_clock_id": clock["id"],
                "coupon_id": deal["id"],
            },
        ),
        201,
    )
    # 2 seats at 1000 and the add-on at 500; 25% off the seats only: 2000 x 25% = 500.
    (first,) = await billed(api, sub["id"])
    assert kinds_and_amounts(first) == [
        ("subscription", 2000),
        ("subscription", 500),
        ("discount", -500),
    ]
    assert first["total"] == 2000

    # A third seat on Jan 16 (16 of 31 days left): the seats' discounted total goes from
    # 1500 to 2250; the add-on's does not change, so it gets no lines.
    moment = at(2031, 1, 16)
    await advance(api, clock["id"], moment)
    period, remaining = seconds(jan, feb), seconds(moment, feb)
    credit, debit = -prorated(1500, remaining, period), prorated(2250, remaining, period)
    assert (credit, debit) == (-774, 1161)
    items = [{"plan_id": seat["id"], "quantity": 3}, {"plan_id": addon["id"]}]
    result = ok(await call(api, sub["id"], "update_items", {"items": items}))
    assert kinds_and_amounts(result["invoice"]) == [("proration", credit), ("proration", debit)]
    assert result["invoice"]["total"] == 387  # proration only: no discount line

    # Feb 1: 3 seats (3000) and the add-on (500); 25% of the seats' 3000 = 750 off.
    await advance(api, clock["id"], feb)
    assert kinds_and_amounts((await billed(api, sub["id"]))[-1]) == [
        ("subscription", 3000),
        ("subscription", 500),
        ("discount", -750),
    ]

    # Down to 1 seat now on Feb 16 (13 of 28 days left): 2250 -> 750 discounted. The net
    # credit goes to the balance; the invoice is 0.
    moment = at(2031, 2, 16)
    await advance(api, clock["id"], moment)
    period, remaining = seconds(feb, mar), seconds(moment, mar)
    credit, debit = -prorated(2250, remaining, period), prorated(750, remaining, period)
    assert (credit, debit) == (-1045, 348)
    items = [{"plan_id": seat["id"], "quantity": 1}, {"plan_id": addon["id"]}]
    result = ok(await call(api, sub["id"], "update_items", {"items": items, "when": "now"}))
    assert kinds_and_amounts(result["invoice"]) == [
        ("proration", credit),
        ("proration", debit),
        ("balance", 697),
    ]
    assert result["invoice"]["total"] == 0

    # Mar 1: 1000 + 500, 250 off the seat, then the balance's 697, last: 1250 - 697 = 553.
    await advance(api, clock["id"], mar)
    renewal = (await billed(api, sub["id"]))[-1]
    assert kinds_and_amounts(renewal) == [
        ("subscription", 1000),
        ("subscription", 500),
        ("discount", -250),
        ("balance", -697),
    ]
    assert (renewal["total"], renewal["status"]) == (553, "paid")

    # More credit than the next invoice: the balance pays what the discount left (1250),
    # the total is 0 and Stripe is not called.
    ok(
        await api.post(
            f"/v1/customers/{customer['id']}/balance_transactions",
            json={"amount": 2000, "currency": "usd", "description": "goodwill"},
        ),
        201,
    )
    await advance(api, clock["id"], apr)
    renewal = (await billed(api, sub["id"]))[-1]
    assert kinds_and_amounts(renewal) == [
        ("subscription", 1000),
        ("subscription", 500),
        ("discount", -250),
        ("balance", -1250),
    ]
    assert (renewal["total"], renewal["status"]) == (0, "paid")
    assert renewal["attempts"][0]["stripe_payment_intent_id"] is None
    balance = ok(await api.get(f"/v1/customers/{customer['id']}"))["balances"]
    assert balance == {"usd": 750}


async def test_redeeming_looks_at_every_item_and_their_total(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    seat = await make_plan(api, amount=1000)
    addon = await make_plan(api, amount=500)
    elsewhere = await make_plan(api, amount=500)
    on_addon = await coupon(api, percent_off=10, duration="once", applies_to_plans=[addon["id"]])
    on_other = await coupon(
        api, percent_off=10, duration="once", applies_to_plans=[elsewhere["id"]]
    )
    base = await coupon(api, amount_off=100, currency="usd", duration="once")
    # 2 seats and the add-on recur at 2500 a period (the first item alone: 2000).
    items = [{"plan_id": seat["id"], "quantity": 2}, {"plan_id": addon["id"]}]
    over = f"OVER{uuid.uuid4().hex[:8]}"
    ok(
        await api.post(
            "/v1/promotion_codes",
            json={"code": over, "coupon_id": base["id"], "minimum_amount": 2501},
        ),
        201,
    )
    meets = f"MEETS{uuid.uuid4().hex[:8]}"
    ok(
        await api.post(
            "/v1/promotion_codes",
            json={"code": meets, "coupon_id": base["id"], "minimum_amount": 2500},
        ),
        201,
    )

    async def create(**body: Any) -> httpx.Response:
        customer = await make_customer(api)
        return await api.post(
            "/v1/subscriptions", json={"customer_id": customer["id"], "items": items, **body}
        )

    rejected(await create(coupon_id=on_other["id"]), 422, "coupon_not_applicable")
    rejected(await create(promotion_code=over), 422, "promotion_code_not_eligible")
    # The coupon of the second item's plan applies: 10% of its 500.
    sub = ok(await create(coupon_id=on_addon["id"]), 201)
    (invoice,) = await billed(api, sub["id"])
    assert kinds_and_amounts(invoice)[-1] == ("discount", -50)
    assert invoice["total"] == 2450
    # A total of exactly the minimum meets it; the `once` discount is used by that invoice.
    sub = ok(await create(promotion_code=meets.lower()), 201)
    (invoice,) = await billed(api, sub["id"])
    assert kinds_and_amounts(invoice)[-1] == ("discount", -100)
    assert (invoice["total"], sub["discount"]) == (2400, None)

    # Later, on the running subscription: the same rules over its items as stored.
    customer = await make_customer(api)
    plain = ok(
        await api.post("/v1/subscriptions", json={"customer_id": customer["id"], "items": items}),
        201,
    )
    path = f"/v1/subscriptions/{plain['id']}/discount"
    rejected(await api.post(path, json={"coupon_id": on_other["id"]}), 422, "coupon_not_applicable")
    rejected(
        await api.post(path, json={"promotion_code": over}), 422, "promotion_code_not_eligible"
    )
    applied = ok(await api.post(path, json={"coupon_id": on_addon["id"]}))
    assert applied["discount"]["coupon_id"] == on_addon["id"]
