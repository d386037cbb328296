"""A crash between Stripe's answer and our bookkeeping must not charge the customer twice,
nor lose (or repeat) the projection a paid renewal's charge writes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHistory

from activities.stripe_gateway import StripeGateway
from tests.conftest import Stack
from tests.helpers import (
    advance,
    event_types,
    get_sub,
    invoices,
    make_clock,
    make_customer,
    make_plan,
    marker_details,
    subscribe,
    ts,
)
from worker import WorkerParts
from workflows.messages import workflow_id_for


@contextmanager
def _crash_once_after_stripe(parts: WorkerParts, crashed: list[str]) -> Iterator[None]:
    """The first charge's activity dies after Stripe accepted it (its key in `crashed`)."""

    def crash_once(key: str) -> None:
        if not crashed:
            crashed.append(key)
            raise RuntimeError("worker died after Stripe accepted the charge")

    parts.payments.after_stripe_call = crash_once
    try:
        yield
    finally:
        parts.payments.after_stripe_call = None


async def test_crash_after_stripe_accepted_charges_once(
    app_client: httpx.AsyncClient,
    worker_parts: WorkerParts,
    stack: Stack,
    temporal_client: Client,
) -> None:
    api = app_client
    plan = await make_plan(api, amount=4200)
    customer = await make_customer(api, "pm_card_visa")
    crashed: list[str] = []
    with _crash_once_after_stripe(worker_parts, crashed):
        sub = await subscribe(api, customer_id=customer["id"], plan_id=plan["id"])

    assert crashed, "the fault was injected"
    assert sub["status"] == "active"
    history = await temporal_client.get_workflow_handle(workflow_id_for(sub["id"])).fetch_history()
    assert _local_activities(history) == ["charge_invoice"], "the charge wrote the projection"
    assert "subscription.activated" in await event_types(api, sub["id"])
    [invoice] = await invoices(api, sub["id"])
    assert invoice["status"] == "paid"
    assert [a["status"] for a in invoice["attempts"]] == ["succeeded"]
    assert crashed[0] == invoice["attempts"][0]["idempotency_key"]
    assert await _stripe_charges(stack, customer, sub, invoice) == 1


async def _stripe_charges(
    stack: Stack, customer: dict[str, Any], sub: dict[str, Any], invoice: dict[str, Any]
) -> int:
    """Succeeded PaymentIntents in localstripe for the invoice, whatever the attempt."""
    gateway = StripeGateway.from_settings(stack.settings)
    return await gateway.count_succeeded_payments(
        stripe_customer_id=customer["stripe_customer_id"],
        idempotency_prefix=f"{sub['id']}:{invoice['id']}:",
    )


def _local_activities(history: WorkflowHistory) -> list[str]:
    """The activity types of the run's local activity markers, in order."""
    markers = marker_details(history.events, "core_local_activity", "data")
    return [data["activity_type"] for data in markers]


async def test_a_paid_renewal_is_charged_and_projected_by_one_local_activity_even_after_a_crash(
    app_client: httpx.AsyncClient,
    worker_parts: WorkerParts,
    stack: Stack,
    temporal_client: Client,
) -> None:
    api = app_client
    start = datetime(2028, 2, 1, 9, 0, tzinfo=UTC)
    plan = await make_plan(api, amount=2500, features=["reports"])
    customer = await make_customer(api, "pm_card_visa")
    clock = await make_clock(api, start)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    handle = temporal_client.get_workflow_handle(workflow_id_for(sub["id"]))
    before = _local_activities(await handle.fetch_history())

    crashed: list[str] = []
    with _crash_once_after_stripe(worker_parts, crashed):
        await advance(api, clock["id"], start + timedelta(days=29))  # 2028-03-01: renewal

    assert crashed, "the fault was injected"
    renewal = _local_activities(await handle.fetch_history())[len(before) :]
    assert renewal == ["charge_invoice"], "the charge wrote the renewal's projection"
    renewed = await get_sub(api, sub["id"])
    assert renewed["status"] == "active"
    assert ts(renewed["current_period_start"]) == datetime(2028, 3, 1, 9, 0, tzinfo=UTC)
    assert ts(renewed["current_period_end"]) == datetime(2028, 4, 1, 9, 0, tzinfo=UTC)
    assert renewed["latest_invoice_id"] != sub["latest_invoice_id"]
    types = await event_types(api, sub["id"])
    assert types.count("subscription.renewed") == 1 and types.count("invoice.paid") == 2
    _, second = await invoices(api, sub["id"])
    assert second["status"] == "paid" and second["total"] == 2500
    assert [a["status"] for a in second["attempts"]] == ["succeeded"]
    assert crashed[0] == second["attempts"][0]["idempotency_key"]
    assert await _stripe_charges(stack, customer, sub, second) == 1
