"""Helpers for the usage tests: meters, metered plans, events, the entitlement check, and
the lines of an invoice as (kind, amount)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from tests.helpers import make_clock, make_customer, make_plan, ok, subscribe


async def make_meter(api: httpx.AsyncClient, aggregation: str, **extra: Any) -> dict[str, Any]:
    body = {"name": f"{aggregation} meter", "event_name": "api_call", "aggregation": aggregation}
    return ok(await api.post("/v1/meters", json=body | extra), 201)  # type: ignore[no-any-return]


def event(
    customer_id: str, tx: str, when: datetime | None = None, **properties: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_id": tx,
        "customer_id": customer_id,
        "event_name": "api_call",
        "properties": properties,
    }
    if when is not None:
        body["timestamp"] = when.isoformat()
    return body


async def batch(api: httpx.AsyncClient, events: list[Any]) -> dict[str, Any]:
    return ok(await api.post("/v1/usage_events/batch", json={"events": events}), 202)  # type: ignore[no-any-return]


async def check(api: httpx.AsyncClient, customer_id: str, feature: str) -> dict[str, Any]:
    params = {"customer_id": customer_id, "feature": feature}
    return ok(await api.get("/v1/entitlements/check", params=params))  # type: ignore[no-any-return]


async def metered_plan(
    api: httpx.AsyncClient, meter: dict[str, Any], amount: int, **extra: Any
) -> dict[str, Any]:
    return await make_plan(api, usage_type="metered", meter_id=meter["id"], amount=amount, **extra)


async def token_plans(api: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """(seat, metered): a licensed seat at 1000, and 200 per started 1,000 tokens (a `sum`
    meter of the `tokens` property)."""
    meter = await make_meter(api, "sum", value_property="tokens")
    seat = await make_plan(api, amount=1000)
    return seat, await metered_plan(api, meter, 200, package_size=1000)


async def customer_on_clock(
    api: httpx.AsyncClient, start: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new customer (with a card) and a new test clock at `start`."""
    return await make_customer(api), await make_clock(api, start)


async def subscribed_on_clock(
    api: httpx.AsyncClient, start: datetime, *plans: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(customer, clock, subscription): a new customer subscribed to `plans`, one item
    each, on a new test clock at `start`."""
    customer, clock = await customer_on_clock(api, start)
    sub = await subscribe(
        api,
        customer_id=customer["id"],
        items=[{"plan_id": plan["id"]} for plan in plans],
        test_clock_id=clock["id"],
    )
    return customer, clock, sub


def kinds(invoice: dict[str, Any]) -> list[tuple[str, int]]:
    return [(line["kind"], line["amount"]) for line in invoice["lines"]]
