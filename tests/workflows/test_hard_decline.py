"""Hard declines stop dunning retries until the payment method changes.

localstripe answers every decline with a bare `card_declined` (no `decline_code`), so this
test gives the real workflow a charge activity that declines with `stolen_card`, on its own
task queue beside the real projection activity and a real Temporal server.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import Client

from api import clock_advances, lifecycle
from domain.contracts import ChargeOutcome, ChargeRequest
from tests.conftest import Stack
from tests.helpers import eventually
from tests.workflows.own_queue import own_queue, worker_for
from workflows.messages import (
    AdvanceClock,
    PaymentMethodChanged,
    workflow_id_for,
)
from workflows.subscription import SubscriptionWorkflow


class DecliningCard:
    """Declines as a stolen card until `replaced`; records every attempt it saw."""

    def __init__(self) -> None:
        self.attempts: list[int] = []
        self.replaced = False

    @activity.defn(name="charge_invoice")
    async def charge_invoice(self, req: ChargeRequest) -> ChargeOutcome:
        invoice = req.invoice
        if invoice.billing_reason == "subscription_cycle":
            self.attempts.append(req.attempt_number)
        if invoice.billing_reason == "subscription_cycle" and not self.replaced:
            return ChargeOutcome(
                status="failed",
                invoice_id=invoice.id,
                attempt_number=req.attempt_number,
                amount=invoice.total,
                decline_code="stolen_card",
                failure_code="card_declined",
                hard_decline=True,
            )
        return ChargeOutcome(
            status="paid",
            invoice_id=invoice.id,
            attempt_number=req.attempt_number,
            amount=invoice.total,
        )


async def test_hard_decline_waits_for_a_new_payment_method(
    temporal_client: Client, stack: Stack
) -> None:
    card = DecliningCard()
    start = datetime(2031, 1, 15, 12, 0, tzinfo=UTC)
    queue = own_queue(stack, "hard-decline", start)
    settings, inp = queue.settings, queue.inp
    async with worker_for(temporal_client, queue, card.charge_invoice):
        view = await lifecycle.start_subscription(temporal_client, settings, inp)
        assert view.status == "active"
        handle = temporal_client.get_workflow_handle(workflow_id_for(inp.subscription_id))

        await clock_advances.advance_subscription(
            temporal_client, inp.subscription_id, start + timedelta(days=31)
        )
        state = await handle.query(SubscriptionWorkflow.state)
        assert state.status == "past_due"
        assert state.dunning.awaiting_payment_method is True
        assert state.dunning.next_retry_at is None
        assert card.attempts == [1]

        # Two weeks pass: no retry is made against a stolen card.
        await clock_advances.advance_subscription(
            temporal_client, inp.subscription_id, start + timedelta(days=46)
        )
        state = await handle.query(SubscriptionWorkflow.state)
        assert state.status == "past_due"
        assert card.attempts == [1]

        card.replaced = True
        await handle.signal(
            SubscriptionWorkflow.payment_method_changed,
            PaymentMethodChanged(payment_method="pm_new"),
        )
        state = await eventually(
            lambda: handle.query(SubscriptionWorkflow.state), lambda s: s.status == "active"
        )
        assert card.attempts == [1, 2]
        assert state.dunning.attempts == 0
        # The clock still works after recovery: the next renewal is charged normally.
        result = await handle.execute_update(
            SubscriptionWorkflow.advance_clock, AdvanceClock(to=start + timedelta(days=60))
        )
        assert result.status == "active"
