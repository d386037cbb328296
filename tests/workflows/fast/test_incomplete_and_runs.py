"""A first payment that fails (incomplete, then expired or paid) and a subscription that
outlives one workflow run (continue-as-new), on the fast lane."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus

from tests.helpers import eventually
from tests.workflows.fast.lane import BASIC, PLUS, Lane, just_after
from workflows.messages import ChangePlanRequest, PaymentMethodChanged
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.fast


async def test_incomplete_first_payment_expires(lane: Lane) -> None:
    sub, first = await lane.start(script=("card_declined",))
    assert first.status == "incomplete"
    assert sub.events() == [
        "subscription.created",
        "invoice.payment_failed",
        "subscription.incomplete",
    ]
    grant = sub.fakes.ledger.entitlements(sub.id)
    assert grant is not None and grant.features == []

    # Incomplete for 23 hours (the default policy), then expired: the invoice is void.
    await lane.skip_to(first.created_at + timedelta(hours=23, minutes=1))
    state = await sub.result()
    assert state.status == "incomplete_expired"
    [(invoice_id, _)] = sub.attempts()
    assert sub.fakes.ledger.invoice_status(sub.id) == {invoice_id: "void"}
    assert sub.events()[-1] == "subscription.incomplete_expired"


async def test_incomplete_is_paid_with_a_new_payment_method(lane: Lane) -> None:
    sub, first = await lane.start(script=("no_payment_method",))
    assert first.status == "incomplete"
    await lane.skip_to(first.created_at + timedelta(hours=2))

    await sub.handle.signal(
        SubscriptionWorkflow.payment_method_changed, PaymentMethodChanged(payment_method="pm_new")
    )
    # The retry runs at once, at the signal: no time needs to pass.
    await eventually(lambda: sub.view().status == "active", what="activation projected")
    assert await sub.state() == sub.view()
    assert [attempt for _, attempt in sub.attempts("subscription_create")] == [1, 2]
    assert sub.events()[-3:] == ["invoice.paid", "subscription.activated", "entitlement.granted"]


async def test_continue_as_new_keeps_the_state(lane: Lane) -> None:
    sub, first = await lane.start(BASIC)
    assert first.current_period_end is not None
    await lane.skip_to(first.created_at + timedelta(days=5))
    await sub.handle.execute_update(SubscriptionWorkflow.change_plan, ChangePlanRequest(plan=PLUS))

    # Thirteen renewals: a run renews at most twelve times, then continues as new.
    await lane.skip_to(first.created_at + timedelta(days=31 * 13 + 1))
    described = await lane.env.client.get_workflow_handle(
        sub.handle.id, run_id=sub.first_run_id
    ).describe()
    assert described.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    latest = await sub.handle.describe()
    assert latest.run_id != sub.first_run_id
    assert latest.status == WorkflowExecutionStatus.RUNNING

    state = await sub.state()
    assert state.status == "active"
    assert state.plan_id == "plus", "the upgrade made in the first run holds in the next"
    assert state.created_at == first.created_at
    assert state.billing_cycle_anchor == first.billing_cycle_anchor
    renewals = [c.invoice for c in sub.fakes.payments.charges[sub.id]]
    cycles = [i for i in renewals if i.billing_reason == "subscription_cycle"]
    assert len(cycles) == 13
    # Periods follow each other without a gap or an overlap, across the new run too.
    for before, after in itertools.pairwise(cycles):
        assert after.period_start == before.period_end
    assert all(i.total == PLUS.amount for i in cycles)
    assert just_after(state.current_period_start, cycles[-1].period_start)
    # One timeline: the new run neither starts over nor projects an older state.
    assert sub.events().count("subscription.created") == 1
    versions = sub.fakes.ledger.versions(sub.id)
    assert versions == sorted(set(versions))
    assert sub.view() == state
