"""Plan changes on the fast lane: an upgrade invoiced now, a downgrade at period end."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from tests.workflows.fast.lane import BASIC, PLUS, Lane
from workflows.messages import ChangePlanRequest
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.fast


async def test_upgrade_is_invoiced_now_for_the_rest_of_the_period(lane: Lane) -> None:
    sub, first = await lane.start(BASIC)
    assert first.current_period_end is not None
    await lane.skip_to(first.created_at + timedelta(days=10))

    result = await sub.handle.execute_update(
        SubscriptionWorkflow.change_plan, ChangePlanRequest(plan=PLUS)
    )
    assert result.decision == {"kind": "upgrade", "when": "now", "proration": "always_invoice"}
    assert result.subscription.plan_id == "plus"
    invoice = result.invoice
    assert invoice is not None
    assert invoice.billing_reason == "subscription_update"
    # The price difference for the two thirds of the period left, nothing for the past.
    assert 0 < invoice.total < PLUS.amount - BASIC.amount
    charged = sub.fakes.payments.charges[sub.id][-1]
    assert charged.invoice.id == invoice.id and charged.attempt_number == 1
    grant = sub.fakes.ledger.entitlements(sub.id)
    assert grant is not None and grant.features == ["posts", "archive"]
    # The period stays: the next renewal is at the new price on the same date.
    assert result.subscription.current_period_end == first.current_period_end

    await lane.skip_to(first.current_period_end + timedelta(minutes=1))
    renewal = sub.fakes.payments.charges[sub.id][-1].invoice
    assert renewal.billing_reason == "subscription_cycle"
    assert renewal.total == PLUS.amount


async def test_declined_upgrade_changes_nothing(lane: Lane) -> None:
    sub, first = await lane.start(BASIC, script=("paid", "card_declined"))
    await lane.skip_to(first.created_at + timedelta(days=3))

    with pytest.raises(WorkflowUpdateFailedError) as err:
        await sub.handle.execute_update(
            SubscriptionWorkflow.change_plan, ChangePlanRequest(plan=PLUS)
        )
    assert "payment_failed" in str(err.value.cause)
    state = await sub.state()
    assert state.plan_id == "basic"
    assert state.latest_invoice_id == first.latest_invoice_id
    [(upgrade_invoice, _)] = sub.attempts("subscription_update")
    assert sub.fakes.ledger.invoice_status(sub.id) == {upgrade_invoice: "void"}


async def test_downgrade_waits_for_the_period_end(lane: Lane) -> None:
    sub, first = await lane.start(PLUS)
    assert first.current_period_end is not None
    await lane.skip_to(first.created_at + timedelta(days=10))

    result = await sub.handle.execute_update(
        SubscriptionWorkflow.change_plan, ChangePlanRequest(plan=BASIC)
    )
    assert result.decision == {"kind": "downgrade", "when": "period_end", "proration": "none"}
    assert result.invoice is None
    state = result.subscription
    assert state.plan_id == "plus", "the paid-for plan stays until the period ends"
    assert state.pending_change is not None
    assert state.pending_change.plan_id == "basic"
    assert state.pending_change.effective_at == first.current_period_end
    assert len(sub.fakes.payments.charges[sub.id]) == 1, "nothing charged for a downgrade"

    await lane.skip_to(first.current_period_end + timedelta(minutes=1))
    state = await sub.state()
    assert state.plan_id == "basic"
    assert state.pending_change is None
    renewal = sub.fakes.payments.charges[sub.id][-1].invoice
    assert renewal.billing_reason == "subscription_cycle"
    assert renewal.total == BASIC.amount
    [changed] = sub.fakes.ledger.event_data(sub.id, "subscription.plan_changed")
    assert changed == {"from_plan": "plus", "to_plan": "basic", "when": "period_end"}
    grant = sub.fakes.ledger.entitlements(sub.id)
    assert grant is not None and grant.features == ["posts"]
