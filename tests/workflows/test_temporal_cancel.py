"""A workflow cancel requested through Temporal cancels the subscription.

The Temporal UI's "Request Cancellation" (or `temporal workflow cancel`) used to end the
workflow CANCELED while the read model still said `active` and the customer stayed
entitled. Now it is an immediate cancel like the API's, audited with actor `temporal` and
the request's reason, and the workflow completes with the canceled subscription.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus

from api import clock_advances, lifecycle
from domain.contracts import ChargeOutcome, ChargeRequest, SubscriptionView
from tests.api.billing_support import at, events_of, start_active
from tests.conftest import Stack
from tests.helpers import advance, eventually, get_sub, make_plan, ok
from tests.workflows.own_queue import own_queue, worker_for
from workflows.messages import workflow_id_for

START = at(2030, 2, 10, 9, 0)


async def test_a_cancel_requested_in_temporal_cancels_the_subscription(
    app_client: httpx.AsyncClient, temporal_client: Client
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1300, features=["vault"])
    customer, clock, sub = await start_active(api, plan, START)
    await advance(api, clock["id"], START + timedelta(days=3))
    handle = temporal_client.get_workflow_handle(
        workflow_id_for(sub["id"]), result_type=SubscriptionView
    )

    await handle.cancel(reason="operator cleanup")
    final = await handle.result()

    assert final.status == "canceled"
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    view = await get_sub(api, sub["id"])
    assert view["status"] == "canceled" and view["canceled_at"] is not None
    check = ok(
        await api.get(
            "/v1/entitlements/check", params={"customer_id": customer["id"], "feature": "vault"}
        )
    )
    assert check["entitled"] is False
    [canceled] = await events_of(api, sub["id"], "subscription.canceled")
    assert canceled["actor"] == "temporal"
    assert canceled["data"]["reason"] == "temporal_cancel_request"
    assert canceled["data"]["detail"] == "operator cleanup"
    # Nothing refunded by default, and later requests see a subscription that has ended.
    assert await events_of(api, sub["id"], "invoice.refunded") == []
    again = await api.post(f"/v1/subscriptions/{sub['id']}/cancel", json={})
    assert again.status_code == 409


class SlowCard:
    """Pays after a pause, long enough for a cancel to arrive mid-charge: a local activity
    runs inside a workflow task, which delivers nothing new until it completes, and the
    task completes while the activity runs on only after 80% of its 10 s timeout."""

    def __init__(self) -> None:
        self.pause = 0.0
        self.started = 0
        self.finished = 0
        self.cancelled = 0

    @activity.defn(name="charge_invoice")
    async def charge_invoice(self, req: ChargeRequest) -> ChargeOutcome:
        self.started += 1
        try:
            await asyncio.sleep(self.pause)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return ChargeOutcome(
            status="paid",
            invoice_id=req.invoice.id,
            attempt_number=req.attempt_number,
            amount=req.invoice.total,
        )


async def test_a_charge_in_flight_finishes_before_the_cancel(
    temporal_client: Client, stack: Stack
) -> None:
    card = SlowCard()
    queue = own_queue(stack, "cancel-mid-charge", datetime(2031, 6, 1, 12, 0, tzinfo=UTC), 900)
    settings, inp = queue.settings, queue.inp
    start = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)
    async with worker_for(temporal_client, queue, card.charge_invoice):
        view = await lifecycle.start_subscription(temporal_client, settings, inp)
        assert view.status == "active" and card.finished == 1
        first_invoice = view.latest_invoice_id
        card.pause = 9.5
        handle = temporal_client.get_workflow_handle(
            workflow_id_for(inp.subscription_id), result_type=SubscriptionView
        )
        renewing = asyncio.create_task(
            clock_advances.advance_subscription(
                temporal_client, inp.subscription_id, start + timedelta(days=31)
            )
        )
        await eventually(lambda: card.started >= 2, what="the renewal's charge started")
        await handle.cancel(reason="mid-charge")  # while the renewal is at "Stripe"
        final = await handle.result()
        await asyncio.gather(renewing, return_exceptions=True)

    assert (card.finished, card.cancelled) == (2, 0), "the renewal's charge ran to its end"
    # The workflow took the charge's answer in (a charge whose answer was dropped would be
    # money taken for a subscription that then ended unaware of it), then canceled.
    assert final.latest_invoice_id not in (None, first_invoice)
    assert final.status == "canceled"
