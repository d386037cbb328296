"""The test cards the README lists, each used as documented: a card Stripe refuses is a 4xx
with a clear code (never a 500) and leaves no customer behind, here or in Stripe; a card
that attaches but declines charges leaves the subscription `incomplete`."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import get_engine
from tests.api.billing_support import stripe_client
from tests.conftest import Stack
from tests.helpers import invoices, make_plan, ok, subscribe

# README "Test cards": (payment-method shortcut or card number, what it does).
ATTACHES = ["pm_card_visa", "4242424242424242"]
DECLINED_ON_ATTACH = [
    "pm_card_visa_chargeDeclined",
    "4000000000000002",
    "4000000000009995",
    "4000000000009987",
    "4000000000009979",
    "4000000000000069",
    "4000000000000127",
    "4000000000000119",
    "4242424242424241",
]
CHARGES_DECLINED = ["pm_card_chargeCustomerFail", "4000000000000341"]
NEEDS_AUTHENTICATION = [
    "4000002500003155",
    "4000002760003184",
    "4000000000003220",
    "4000000000003063",
]
# Authentication required, and declined once authenticated.
AUTHENTICATED_THEN_DECLINED = ["4000008260003178", "4000008400001629"]


@pytest.fixture
def engine(stack: Stack) -> AsyncEngine:
    return get_engine(stack.settings.effective_database_url)


def _payment_method(stack: Stack, card: str) -> str:
    """The shortcut as is; a card number becomes a PaymentMethod, as a reader would make one."""
    if card.startswith("pm_"):
        return card
    created = stripe_client(stack).v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    return str(created.id)


async def _create(api: httpx.AsyncClient, stack: Stack, card: str) -> tuple[str, httpx.Response]:
    email = f"card-{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "payment_method": _payment_method(stack, card)}
    return email, await api.post("/v1/customers", json=body)


async def _nothing_kept(engine: AsyncEngine, stack: Stack, email: str) -> None:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("select count(*) from customers where email = :e"), {"e": email}
        )
        assert rows.scalar_one() == 0, "no customer row for a refused card"
    in_stripe = stripe_client(stack).v1.customers.list({"email": email, "limit": 10})
    assert [c.id for c in in_stripe.data] == [], "its Stripe customer was deleted"


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    error = response.json()["error"]
    assert error["code"] == code, error
    return str(error["message"])


async def _subscribe(api: httpx.AsyncClient, customer: dict[str, Any]) -> dict[str, Any]:
    plan = await make_plan(api, amount=1500)
    return await subscribe(api, customer_id=customer["id"], plan_id=plan["id"])


@pytest.mark.parametrize("card", DECLINED_ON_ATTACH)
async def test_card_declined_on_attach_is_402_and_creates_nothing(
    app_client: httpx.AsyncClient, stack: Stack, engine: AsyncEngine, card: str
) -> None:
    email, response = await _create(app_client, stack, card)
    assert "declined" in _error(response, 402, "card_declined")
    await _nothing_kept(engine, stack, email)


async def test_unknown_payment_method_is_422_and_creates_nothing(
    app_client: httpx.AsyncClient, stack: Stack, engine: AsyncEngine
) -> None:
    email, response = await _create(app_client, stack, "pm_card_doesnotexist")
    _error(response, 422, "payment_method_invalid")
    await _nothing_kept(engine, stack, email)


@pytest.mark.parametrize("card", ATTACHES)
async def test_good_card_subscribes_and_pays(
    app_client: httpx.AsyncClient, stack: Stack, card: str
) -> None:
    _, response = await _create(app_client, stack, card)
    customer = ok(response, 201)
    sub = await _subscribe(app_client, customer)
    assert sub["status"] == "active"
    [invoice] = await invoices(app_client, sub["id"])
    assert invoice["status"] == "paid"


@pytest.mark.parametrize("card", CHARGES_DECLINED)
async def test_card_that_declines_charges_leaves_the_subscription_incomplete(
    app_client: httpx.AsyncClient, stack: Stack, card: str
) -> None:
    _, response = await _create(app_client, stack, card)
    customer = ok(response, 201)
    assert customer["default_payment_method"]
    sub = await _subscribe(app_client, customer)
    assert sub["status"] == "incomplete"
    [invoice] = await invoices(app_client, sub["id"])
    assert invoice["status"] == "open"
    assert [a["failure_code"] for a in invoice["attempts"]] == ["card_declined"]


@pytest.mark.parametrize("card", NEEDS_AUTHENTICATION + AUTHENTICATED_THEN_DECLINED)
async def test_card_that_needs_authentication_leaves_the_subscription_incomplete(
    app_client: httpx.AsyncClient, stack: Stack, card: str
) -> None:
    _, response = await _create(app_client, stack, card)
    customer = ok(response, 201)
    sub = await _subscribe(app_client, customer)
    assert sub["status"] == "incomplete"
    [invoice] = await invoices(app_client, sub["id"])
    assert [a["failure_code"] for a in invoice["attempts"]] == ["authentication_required"]


async def test_declined_card_as_new_payment_method_is_402_and_keeps_the_old_one(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    _, response = await _create(app_client, stack, "pm_card_visa")
    customer = ok(response, 201)
    for card, status, code in (
        ("pm_card_visa_chargeDeclined", 402, "card_declined"),
        ("pm_card_doesnotexist", 422, "payment_method_invalid"),
    ):
        refused = await app_client.post(
            f"/v1/customers/{customer['id']}/payment_method", json={"payment_method": card}
        )
        _error(refused, status, code)
    kept = ok(await app_client.get(f"/v1/customers/{customer['id']}"))
    assert kept["default_payment_method"] == customer["default_payment_method"]
