"""Helpers for the billing lifecycle API tests: exact time arithmetic and terse API calls.

Expected amounts are computed here independently of `domain/`: whole seconds and
half-up integer rounding, as the design states the rule.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import stripe

from tests.conftest import Stack
from tests.helpers import make_clock, make_customer, ok, subscribe, ts


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def seconds(start: datetime, end: datetime) -> int:
    delta = end - start
    return delta.days * 86_400 + delta.seconds


def half_up(numerator: int, denominator: int) -> int:
    """round(numerator / denominator), halves up, for non-negative integers."""
    return (2 * numerator + denominator) // (2 * denominator)


def prorated(amount: int, remaining: int, period: int) -> int:
    return half_up(amount * remaining, period)


async def call(
    api: httpx.AsyncClient,
    sub_id: str,
    operation: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await api.post(f"/v1/subscriptions/{sub_id}/{operation}", json=body, headers=headers)


def rejected(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return str(error["message"])


async def timeline(api: httpx.AsyncClient, sub_id: str) -> list[dict[str, Any]]:
    return ok(await api.get("/v1/events", params={"subscription_id": sub_id}))  # type: ignore[no-any-return]


async def events_of(api: httpx.AsyncClient, sub_id: str, type_: str) -> list[dict[str, Any]]:
    return [e for e in await timeline(api, sub_id) if e["type"] == type_]


async def start_active(
    api: httpx.AsyncClient, plan: dict[str, Any], start: datetime, card: str = "pm_card_visa"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(customer, clock, subscription) for a new active subscription on a test clock."""
    customer = await make_customer(api, card)
    clock = await make_clock(api, start)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    assert sub["status"] == "active", sub
    return customer, clock, sub


def line_tuples(invoice: dict[str, Any]) -> list[tuple[str, int, datetime, datetime]]:
    return [
        (line["kind"], line["amount"], ts(line["period_start"]), ts(line["period_end"]))
        for line in invoice["lines"]
    ]


async def api_key(api: httpx.AsyncClient, role: str) -> dict[str, str]:
    """Headers authenticating as a fresh key of `role` (created by the admin client)."""
    created = ok(await api.post("/v1/api_keys", json={"role": role}), 201)
    return {"Authorization": f"Bearer {created['key']}"}


def stripe_client(stack: Stack) -> stripe.StripeClient:
    """The real `stripe` SDK against the stack's Stripe fake, with the stack's key."""
    base = stack.settings.effective_stripe_api_base
    assert base is not None
    return stripe.StripeClient(
        stack.settings.stripe_api_key, base_addresses={"api": base}, max_network_retries=0
    )


def stripe_refunds(stack: Stack, invoice: dict[str, Any]) -> list[tuple[int, str]]:
    """The Stripe refunds of the PaymentIntent that paid `invoice`: (amount, status)."""
    (attempt,) = [a for a in invoice["attempts"] if a["status"] == "succeeded"]
    intent = attempt["stripe_payment_intent_id"]
    assert intent
    found = stripe_client(stack).v1.refunds.list({"payment_intent": intent, "limit": 100})
    return sorted((r.amount, r.status) for r in found.data)
