"""The customer balance through the API: manual credits and debits by staff, the ledger,
`balances` on the customer, the audited timeline entry and its webhook event."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.api.billing_support import api_key, at, events_of, rejected, stripe_refunds
from tests.api.test_item_discounts import coupon
from tests.conftest import Stack
from tests.helpers import advance, invoices, make_clock, make_customer, make_plan, ok, subscribe


async def _post(
    api: httpx.AsyncClient, customer_id: str, body: dict[str, Any], **kw: Any
) -> httpx.Response:
    return await api.post(f"/v1/customers/{customer_id}/balance_transactions", json=body, **kw)


async def test_manual_credit_and_debit_keep_the_ledger_and_balance(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    customer = await make_customer(api)
    assert customer["balances"] == {}
    support = await api_key(api, "support")

    credit = ok(
        await _post(
            api,
            customer["id"],
            {"amount": 1500, "currency": "USD", "description": "Sorry for the outage"},
            headers=support,
        ),
        201,
    )
    assert credit["id"].startswith("cbtxn_")
    assert (credit["amount"], credit["currency"], credit["type"]) == (1500, "usd", "manual")
    assert credit["balance_after"] == 1500
    debit = ok(
        await _post(api, customer["id"], {"amount": -400, "currency": "usd", "description": "Fix"}),
        201,
    )
    assert debit["balance_after"] == 1100
    refused = await _post(
        api, customer["id"], {"amount": -1101, "currency": "usd", "description": "Too much"}
    )
    assert "below zero" in rejected(refused, 409, "insufficient_balance")
    # Another currency has its own balance, starting at zero.
    rejected(
        await _post(api, customer["id"], {"amount": -1, "currency": "eur", "description": "x"}),
        409,
        "insufficient_balance",
    )

    ledger = ok(await api.get(f"/v1/customers/{customer['id']}/balance_transactions"))
    assert [(t["amount"], t["type"], t["invoice_id"]) for t in ledger] == [
        (1500, "manual", None),
        (-400, "manual", None),
    ]
    shown = ok(await api.get(f"/v1/customers/{customer['id']}"))
    assert shown["balances"] == {"usd": 1100}

    events = ok(await api.get("/v1/events", params={"customer_id": customer["id"]}))
    updates = [e for e in events if e["type"] == "customer.balance_updated"]
    assert [(e["data"]["amount"], e["data"]["balance"]) for e in updates] == [
        (1500, 1500),
        (-400, 1100),
    ]
    support_key_id = updates[0]["actor"]
    assert support_key_id.startswith("key:") and updates[1]["actor"] != support_key_id


async def test_roles_and_bad_input(app_client: httpx.AsyncClient) -> None:
    api = app_client
    customer = await make_customer(api)
    body = {"amount": 100, "currency": "usd", "description": "x"}
    product = await api_key(api, "product")
    rejected(await _post(api, customer["id"], body, headers=product), 403, "forbidden")
    # Any key reads the ledger.
    ok(await api.get(f"/v1/customers/{customer['id']}/balance_transactions", headers=product))
    rejected(await _post(api, "cus_missing", body), 404, "resource_missing")
    rejected(await _post(api, customer["id"], {**body, "amount": 0}), 422, "invalid_amount")
    rejected(await _post(api, customer["id"], {**body, "amount": 1.5}), 422, "validation_error")
    rejected(await _post(api, customer["id"], {**body, "currency": "us"}), 422, "validation_error")
    assert ok(await api.get(f"/v1/customers/{customer['id']}"))["balances"] == {}


async def test_concurrent_debits_never_take_the_balance_below_zero(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    customer = await make_customer(api)
    ok(
        await _post(api, customer["id"], {"amount": 1000, "currency": "usd", "description": "c"}),
        201,
    )
    debit = {"amount": -300, "currency": "usd", "description": "d"}
    answers = await asyncio.gather(*(_post(api, customer["id"], debit) for _ in range(6)))
    assert sorted(r.status_code for r in answers) == [201, 201, 201, 409, 409, 409]
    shown = ok(await api.get(f"/v1/customers/{customer['id']}"))
    assert shown["balances"] == {"usd": 100}


async def test_a_repeated_request_with_its_idempotency_key_posts_once(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    customer = await make_customer(api)
    body = {"amount": 250, "currency": "usd", "description": "Goodwill"}
    headers = {"Idempotency-Key": f"credit-{customer['id']}"}
    first = ok(await _post(api, customer["id"], body, headers=headers), 201)
    again = ok(await _post(api, customer["id"], body, headers=headers), 201)
    assert again["id"] == first["id"]
    ledger = ok(await api.get(f"/v1/customers/{customer['id']}/balance_transactions"))
    assert len(ledger) == 1


async def test_invoices_use_the_balance_last_and_a_zero_total_is_paid_without_stripe(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1000)
    customer, clock = await make_customer(api), await make_clock(api, at(2027, 5, 1))
    ok(
        await _post(api, customer["id"], {"amount": 2300, "currency": "usd", "description": "c"}),
        201,
    )
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    assert sub["status"] == "active"
    for month in (6, 7, 8):
        await advance(api, clock["id"], at(2027, month, 1))
    bills = await invoices(api, sub["id"])
    # 1000 each month: paid by 1000, 1000 and 300 of credit, then 700 charged, then 1000.
    assert [(b["total"], b["status"]) for b in bills] == [
        (0, "paid"),
        (0, "paid"),
        (700, "paid"),
        (1000, "paid"),
    ]
    assert [[li["kind"] for li in b["lines"]] for b in bills] == [
        ["subscription", "balance"],
        ["subscription", "balance"],
        ["subscription", "balance"],
        ["subscription"],
    ]
    assert bills[2]["lines"][-1]["amount"] == -300
    # No money moved for a zero total; the 700 went through Stripe.
    assert [a["stripe_payment_intent_id"] is None for a in bills[0]["attempts"]] == [True]
    assert bills[2]["attempts"][-1]["amount"] == 700
    assert bills[2]["attempts"][-1]["stripe_payment_intent_id"]
    ledger = ok(await api.get(f"/v1/customers/{customer['id']}/balance_transactions"))
    assert [(t["amount"], t["type"], t["invoice_id"], t["balance_after"]) for t in ledger] == [
        (2300, "manual", None, 2300),
        (-1000, "applied_to_invoice", bills[0]["id"], 1300),
        (-1000, "applied_to_invoice", bills[1]["id"], 300),
        (-300, "applied_to_invoice", bills[2]["id"], 0),
    ]
    assert ok(await api.get(f"/v1/customers/{customer['id']}"))["balances"] == {"usd": 0}


async def test_a_preview_shows_the_balance_line_the_change_then_makes(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    basic, pro = await make_plan(api, amount=1000), await make_plan(api, amount=3000)
    customer, clock = await make_customer(api), await make_clock(api, at(2027, 9, 1))
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=basic["id"], test_clock_id=clock["id"]
    )
    ok(
        await _post(api, customer["id"], {"amount": 400, "currency": "usd", "description": "c"}),
        201,
    )
    await advance(api, clock["id"], at(2027, 9, 16))
    change = f"/v1/subscriptions/{sub['id']}/change_plan"
    preview = ok(await api.post(change, json={"plan_id": pro["id"], "preview": True}))
    # 15 of 30 days left: -500 + 1500, then 400 of credit.
    lines = [(li["kind"], li["amount"]) for li in preview["invoice_preview"]["lines"]]
    assert lines == [("proration", -500), ("proration", 1500), ("balance", -400)]
    assert preview["invoice_preview"]["total"] == 600
    done = ok(await api.post(change, json={"plan_id": pro["id"]}))
    assert [(li["kind"], li["amount"]) for li in done["invoice"]["lines"]] == lines
    assert (done["invoice"]["total"], done["invoice"]["status"]) == (600, "paid")
    assert ok(await api.get(f"/v1/customers/{customer['id']}"))["balances"] == {"usd": 0}


async def test_a_voided_invoice_gives_its_credit_back(app_client: httpx.AsyncClient) -> None:
    api = app_client
    basic, pro = await make_plan(api, amount=1000), await make_plan(api, amount=3000)
    customer, clock = await make_customer(api), await make_clock(api, at(2027, 9, 1))
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=basic["id"], test_clock_id=clock["id"]
    )
    ok(
        await _post(api, customer["id"], {"amount": 300, "currency": "usd", "description": "c"}),
        201,
    )
    cards = f"/v1/customers/{customer['id']}/payment_method"
    ok(await api.post(cards, json={"payment_method": "pm_card_chargeCustomerFail"}))
    await advance(api, clock["id"], at(2027, 9, 16))
    refused = await api.post(
        f"/v1/subscriptions/{sub['id']}/change_plan", json={"plan_id": pro["id"]}
    )
    rejected(refused, 409, "payment_failed")
    voided = (await invoices(api, sub["id"]))[-1]
    assert voided["status"] == "void"
    assert [(li["kind"], li["amount"]) for li in voided["lines"]][-1] == ("balance", -300)
    ledger = ok(await api.get(f"/v1/customers/{customer['id']}/balance_transactions"))
    assert [(t["type"], t["amount"], t["invoice_id"]) for t in ledger] == [
        ("manual", 300, None),
        ("applied_to_invoice", -300, voided["id"]),
        ("adjustment", 300, voided["id"]),
    ]
    assert ok(await api.get(f"/v1/customers/{customer['id']}"))["balances"] == {"usd": 300}


async def test_a_prorated_refund_returns_time_paid_from_the_balance_to_it(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1000)
    customer, clock = await make_customer(api), await make_clock(api, at(2027, 4, 1))
    body = {"amount": 600, "currency": "usd", "description": "Goodwill"}
    ok(await _post(api, customer["id"], body), 201)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    (opening,) = await invoices(api, sub["id"])
    assert [(li["kind"], li["amount"]) for li in opening["lines"]] == [
        ("subscription", 1000),
        ("balance", -600),
    ]
    assert opening["total"] == 400

    # Half of April left: 500 of unused time, of which 400 was paid in cash.
    await advance(api, clock["id"], at(2027, 4, 16))
    cancel = {"at_period_end": False, "refund": "prorated"}
    ok(await api.post(f"/v1/subscriptions/{sub['id']}/cancel", json=cancel))
    _, note = await invoices(api, sub["id"])
    assert (note["billing_reason"], note["total"]) == ("subscription_cancel_refund", -500)
    assert stripe_refunds(stack, opening) == [(400, "succeeded")]
    ledger = ok(await api.get(f"/v1/customers/{customer['id']}/balance_transactions"))
    assert [(t["amount"], t["type"], t["invoice_id"], t["balance_after"]) for t in ledger] == [
        (600, "manual", None, 600),
        (-600, "applied_to_invoice", opening["id"], 0),
        (100, "proration_credit", note["id"], 100),
    ]
    assert ok(await api.get(f"/v1/customers/{customer['id']}"))["balances"] == {"usd": 100}
    (refunded,) = await events_of(api, sub["id"], "invoice.refunded")
    assert (refunded["data"]["amount"], refunded["data"]["to_balance"]) == (400, 100)


async def test_a_prorated_refund_returns_no_credit_a_discount_paid(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    """What cash cannot take back is returned to the balance only as far as the balance
    paid it: here a `once` coupon paid half the period and the balance nothing."""
    api = app_client
    plan = await make_plan(api, amount=1000)
    half = await coupon(api, percent_off=50, duration="once")
    customer, clock = await make_customer(api), await make_clock(api, at(2027, 4, 1))
    sub = await subscribe(
        api,
        customer_id=customer["id"],
        plan_id=plan["id"],
        coupon_id=half["id"],
        test_clock_id=clock["id"],
    )
    (opening,) = await invoices(api, sub["id"])
    assert opening["total"] == 500
    # A day in: 29 of 30 days unused at the full price (the coupon was used): 967 of credit,
    # of which 500 was paid in cash and the rest by the coupon.
    await advance(api, clock["id"], at(2027, 4, 2))
    cancel = {"at_period_end": False, "refund": "prorated"}
    ok(await api.post(f"/v1/subscriptions/{sub['id']}/cancel", json=cancel))
    _, note = await invoices(api, sub["id"])
    assert note["total"] == -967
    assert stripe_refunds(stack, opening) == [(500, "succeeded")]
    ledger = ok(await api.get(f"/v1/customers/{customer['id']}/balance_transactions"))
    assert ledger == [], "the balance paid nothing, so nothing returns to it"
    (refunded,) = await events_of(api, sub["id"], "invoice.refunded")
    assert (refunded["data"]["amount"], refunded["data"]["to_balance"]) == (500, 0)
