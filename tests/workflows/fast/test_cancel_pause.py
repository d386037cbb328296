"""Cancel (now, at period end, reactivated) and pause/resume on the fast lane."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.workflows.fast.lane import Lane, just_after
from workflows.messages import ActorRequest, CancelRequest, PauseRequest
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.fast


async def test_cancel_at_period_end_can_be_undone_and_ends_uncharged(lane: Lane) -> None:
    sub, first = await lane.start()
    assert first.current_period_end is not None
    cancel = SubscriptionWorkflow.cancel
    scheduled = await sub.handle.execute_update(cancel, CancelRequest(at_period_end=True))
    assert scheduled.status == "active" and scheduled.cancel_at_period_end is True

    back = await sub.handle.execute_update(SubscriptionWorkflow.reactivate, ActorRequest())
    assert back.cancel_at_period_end is False
    await sub.handle.execute_update(cancel, CancelRequest(at_period_end=True))
    assert sub.events()[-3:] == [
        "subscription.cancel_scheduled",
        "subscription.reactivated",
        "subscription.cancel_scheduled",
    ]

    await lane.skip_to(first.current_period_end + timedelta(minutes=1))
    state = await sub.result()
    assert state.status == "canceled"
    assert just_after(state.canceled_at, first.current_period_end)
    assert sub.attempts("subscription_cycle") == [], "no renewal for a canceled period"
    [canceled] = sub.fakes.ledger.event_data(sub.id, "subscription.canceled")
    assert canceled["reason"] == "cancel_at_period_end"


async def test_cancel_now_with_a_prorated_refund(lane: Lane) -> None:
    sub, first = await lane.start()
    await lane.skip_to(first.created_at + timedelta(days=10))

    state = await sub.handle.execute_update(
        SubscriptionWorkflow.cancel, CancelRequest(at_period_end=False, refund="prorated")
    )
    assert state.status == "canceled"
    [refund] = sub.fakes.payments.refunds[sub.id]
    [(paid_invoice, _)] = sub.attempts("subscription_create")
    assert refund.invoice_id == paid_invoice
    # About two thirds of the period were left unused.
    assert 500 < refund.amount < 800
    assert refund.credit_note.billing_reason == "subscription_cancel_refund"
    assert refund.credit_note.total == -refund.amount
    [refunded] = sub.fakes.ledger.event_data(sub.id, "invoice.refunded")
    assert refunded["amount"] == refund.amount
    assert await sub.result() == state


async def test_cancel_now_without_refund(lane: Lane) -> None:
    sub, _ = await lane.start()
    state = await sub.handle.execute_update(
        SubscriptionWorkflow.cancel, CancelRequest(at_period_end=False, actor="support")
    )
    assert state.status == "canceled"
    assert sub.fakes.payments.refunds[sub.id] == []
    assert sub.events()[-2:] == ["subscription.canceled", "entitlement.revoked"]
    [canceled] = sub.fakes.ledger.event_data(sub.id, "subscription.canceled")
    assert canceled["reason"] == "requested"
    assert await sub.result() == state


async def test_trial_canceled_at_period_end_ends_with_the_trial_uncharged(lane: Lane) -> None:
    sub, first = await lane.start(trial_days=7)
    assert first.trial_end is not None
    await sub.handle.execute_update(SubscriptionWorkflow.cancel, CancelRequest(at_period_end=True))

    await lane.skip_to(first.trial_end + timedelta(minutes=1))
    state = await sub.result()
    assert state.status == "canceled"
    assert sub.attempts() == []


async def test_pause_then_resume_charges_a_new_period_less_the_unused_time(lane: Lane) -> None:
    sub, first = await lane.start()
    await lane.skip_to(first.created_at + timedelta(days=10))

    paused = await sub.handle.execute_update(SubscriptionWorkflow.pause, PauseRequest())
    assert paused.status == "paused"
    grant = sub.fakes.ledger.entitlements(sub.id)
    assert grant is not None and grant.features == []
    [pause_event] = sub.fakes.ledger.event_data(sub.id, "subscription.paused")
    credit = pause_event["credit"]
    assert isinstance(credit, int) and 0 < -credit < 1000
    # Paused without an end: nothing but a resume moves it.
    assert await sub.pending_timers() == 0

    await lane.skip_to(first.created_at + timedelta(days=40))
    assert len(sub.attempts()) == 1, "no charge while paused"
    resume_at = await lane.now()
    state = await sub.handle.execute_update(SubscriptionWorkflow.resume, ActorRequest())
    assert state.status == "active"
    assert just_after(state.current_period_start, resume_at)
    invoice = sub.fakes.payments.charges[sub.id][-1].invoice
    assert invoice.billing_reason == "subscription_resume"
    assert invoice.total == 1000 + credit
    grant = sub.fakes.ledger.entitlements(sub.id)
    assert grant is not None and grant.features == ["posts"]


async def test_pause_with_an_end_resumes_by_itself(lane: Lane) -> None:
    sub, first = await lane.start()
    resumes_at = first.created_at + timedelta(days=20)
    await sub.handle.execute_update(SubscriptionWorkflow.pause, PauseRequest(resumes_at=resumes_at))

    await lane.skip_to(resumes_at + timedelta(minutes=1))
    state = await sub.state()
    assert state.status == "active"
    assert state.pause is None
    assert just_after(state.current_period_start, resumes_at)
    assert sub.attempts("subscription_resume") != []
    assert "subscription.resumed" in sub.events()
