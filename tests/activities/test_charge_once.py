"""A crash between Stripe's answer and our bookkeeping must not charge the customer twice."""

from __future__ import annotations

import httpx

from activities.stripe_gateway import StripeGateway
from tests.conftest import Stack
from tests.helpers import invoices, make_customer, make_plan, subscribe
from worker import WorkerParts


async def test_crash_after_stripe_accepted_charges_once(
    app_client: httpx.AsyncClient, worker_parts: WorkerParts, stack: Stack
) -> None:
    api = app_client
    plan = await make_plan(api, amount=4200)
    customer = await make_customer(api, "pm_card_visa")
    crashed: list[str] = []

    def crash_once(key: str) -> None:
        if not crashed:
            crashed.append(key)
            raise RuntimeError("worker died after Stripe accepted the charge")

    worker_parts.payments.after_stripe_call = crash_once
    try:
        sub = await subscribe(api, customer_id=customer["id"], plan_id=plan["id"])
    finally:
        worker_parts.payments.after_stripe_call = None

    assert crashed, "the fault was injected"
    assert sub["status"] == "active"
    [invoice] = await invoices(api, sub["id"])
    assert invoice["status"] == "paid"
    assert [a["status"] for a in invoice["attempts"]] == ["succeeded"]
    assert crashed[0] == invoice["attempts"][0]["idempotency_key"]

    gateway = StripeGateway.from_settings(stack.settings)
    charged = await gateway.count_succeeded_payments(
        stripe_customer_id=customer["stripe_customer_id"],
        idempotency_prefix=f"{sub['id']}:{invoice['id']}:",
    )
    assert charged == 1
