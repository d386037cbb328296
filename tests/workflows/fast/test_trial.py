"""Trials on the fast lane: activation, ending without a way to pay, extension."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from tests.workflows.fast.lane import Lane, just_after
from workflows.messages import ExtendTrialRequest
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.fast


async def test_trial_warns_then_activates_with_the_first_charge(lane: Lane) -> None:
    sub, first = await lane.start(trial_days=14)
    assert first.status == "trialing"
    assert first.trial_end == first.created_at + timedelta(days=14)
    assert sub.attempts() == []
    assert sub.events() == [
        "subscription.created",
        "subscription.trial_started",
        "entitlement.granted",
    ]

    # Three days before the end: the warning, and still no charge.
    await lane.skip_to(first.trial_end - timedelta(days=2))
    assert sub.events()[-1] == "subscription.trial_will_end"
    assert sub.attempts() == []

    await lane.skip_to(first.trial_end + timedelta(hours=1))
    state = await sub.state()
    assert state.status == "active"
    [charge] = sub.fakes.payments.charges[sub.id]
    assert charge.invoice.billing_reason == "subscription_cycle"
    assert charge.invoice.period_start == state.current_period_start == first.trial_end
    assert charge.invoice.period_end == state.current_period_end
    assert state.current_period_end - first.trial_end >= timedelta(days=28)
    assert charge.invoice.total == 1000
    assert sub.events()[-2:] == ["invoice.paid", "subscription.activated"]
    assert sub.view() == state


async def test_trial_ending_without_a_payment_method_cancels(lane: Lane) -> None:
    sub, first = await lane.start(trial_days=7, script=("no_payment_method",))
    assert first.trial_end is not None

    await lane.skip_to(first.trial_end + timedelta(minutes=1))
    state = await sub.state()
    assert state.status == "canceled"
    assert just_after(state.canceled_at, first.trial_end)
    [invoice_id] = [invoice for invoice, _ in sub.attempts()]
    assert sub.fakes.ledger.invoice_status(sub.id) == {invoice_id: "void"}
    [canceled] = sub.fakes.ledger.event_data(sub.id, "subscription.canceled")
    assert canceled["reason"] == "trial_ended_without_payment_method"
    grant = sub.fakes.ledger.entitlements(sub.id)
    assert grant is not None and grant.features == []
    assert "entitlement.revoked" in sub.events()
    # The workflow is over: it returned its final view.
    assert await sub.result() == state


async def test_extended_trial_moves_the_warning_and_the_first_charge(lane: Lane) -> None:
    sub, first = await lane.start(trial_days=14)
    assert first.trial_end is not None
    new_end = first.trial_end + timedelta(days=10)
    extended = await sub.handle.execute_update(
        SubscriptionWorkflow.extend_trial, ExtendTrialRequest(trial_end=new_end)
    )
    assert extended.trial_end == new_end
    assert extended.current_period_end == new_end

    # Past the old end: the warning for the new end is what happens next, not a charge.
    await lane.skip_to(new_end - timedelta(days=2))
    assert sub.events()[-1] == "subscription.trial_will_end"
    [warned] = sub.fakes.ledger.event_data(sub.id, "subscription.trial_will_end")
    assert warned["trial_end"] == new_end.isoformat()
    assert (await sub.state()).status == "trialing"
    assert sub.attempts() == []

    await lane.skip_to(new_end + timedelta(minutes=1))
    assert (await sub.state()).status == "active"
    [charge] = sub.fakes.payments.charges[sub.id]
    assert charge.invoice.period_start == new_end


async def test_a_trial_cannot_be_shortened(lane: Lane) -> None:
    sub, first = await lane.start(trial_days=14)
    assert first.trial_end is not None
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await sub.handle.execute_update(
            SubscriptionWorkflow.extend_trial,
            ExtendTrialRequest(trial_end=first.trial_end - timedelta(days=1)),
        )
    assert "invalid_trial_end" in str(err.value.cause)
    assert (await sub.state()).trial_end == first.trial_end
