"""Renewals and dunning on the fast lane: paid, declined and retried, recovered, exhausted,
and hard declines that wait for a new payment method."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.dunning import DunningPolicy, ExhaustedAction
from tests.helpers import eventually
from tests.workflows.fast.lane import Lane
from workflows.messages import BillingPolicy, PaymentMethodChanged
from workflows.subscription import SubscriptionWorkflow

pytestmark = pytest.mark.fast


async def test_renewal_is_charged_at_period_end(lane: Lane) -> None:
    sub, first = await lane.start()
    assert first.status == "active"
    assert first.current_period_end is not None
    assert sub.events()[:3] == ["subscription.created", "invoice.paid", "subscription.activated"]
    assert await sub.pending_timers() == 1  # the period end

    await lane.skip_to(first.current_period_end + timedelta(minutes=1))
    state = await sub.state()
    assert state.status == "active"
    create, cycle = sub.fakes.payments.charges[sub.id]
    assert create.invoice.billing_reason == "subscription_create"
    assert cycle.invoice.billing_reason == "subscription_cycle"
    assert cycle.invoice.period_start == first.current_period_end == state.current_period_start
    assert cycle.invoice.total == 1000
    assert state.latest_invoice_id == cycle.invoice.id
    assert sub.events()[-2:] == ["invoice.paid", "subscription.renewed"]
    assert sub.view() == state


async def test_declined_renewal_is_retried_until_it_recovers(lane: Lane) -> None:
    sub, first = await lane.start(script=("paid", "insufficient_funds", "card_declined", "paid"))
    assert first.current_period_end is not None

    await lane.skip_to(first.current_period_end + timedelta(minutes=1))
    state = await sub.state()
    assert state.status == "past_due"
    assert state.dunning.attempts == 1
    failed_at = state.dunning.first_failure_at
    assert failed_at is not None
    assert state.dunning.next_retry_at == failed_at + timedelta(hours=24)
    # Entitlements stay during the grace.
    grant = sub.fakes.ledger.entitlements(sub.id)
    assert grant is not None and grant.features == ["posts"]

    await lane.skip_to(failed_at + timedelta(hours=25))
    state = await sub.state()
    assert state.status == "past_due"
    assert state.dunning.attempts == 2
    assert state.dunning.next_retry_at == failed_at + timedelta(hours=48)

    await lane.skip_to(failed_at + timedelta(hours=49))
    state = await sub.state()
    assert state.status == "active"
    assert state.dunning.attempts == 0 and state.dunning.next_retry_at is None
    renewal = sub.attempts("subscription_cycle")
    assert [attempt for _, attempt in renewal] == [1, 2, 3]
    assert len({invoice for invoice, _ in renewal}) == 1, "every retry is of the same invoice"
    assert sub.events().count("invoice.payment_failed") == 2
    assert sub.events()[-2:] == ["invoice.paid", "subscription.recovered"]


@pytest.mark.parametrize(
    ("action", "status"), [(ExhaustedAction.CANCEL, "canceled"), (ExhaustedAction.UNPAID, "unpaid")]
)
async def test_exhausted_dunning_ends_as_the_policy_says(
    lane: Lane, action: ExhaustedAction, status: str
) -> None:
    policy = BillingPolicy(
        dunning=DunningPolicy(retry_schedule_hours=[24, 48], exhausted_action=action)
    )
    sub, first = await lane.start(
        script=("paid", "card_declined", "card_declined", "card_declined"), policy=policy
    )
    assert first.current_period_end is not None

    await lane.skip_to(first.current_period_end + timedelta(hours=49))
    state = await sub.state()
    assert state.status == status
    renewal = sub.attempts("subscription_cycle")
    assert [attempt for _, attempt in renewal] == [1, 2, 3]
    [(invoice_id, _), *_] = renewal
    assert sub.fakes.ledger.invoice_status(sub.id) == {invoice_id: "uncollectible"}
    grant = sub.fakes.ledger.entitlements(sub.id)
    assert grant is not None and grant.features == []
    if status == "canceled":
        [canceled] = sub.fakes.ledger.event_data(sub.id, "subscription.canceled")
        assert canceled["reason"] == "dunning_exhausted"
        assert await sub.result() == state
    else:
        assert sub.events()[-2:] == ["subscription.unpaid", "entitlement.revoked"]
        assert state.dunning.awaiting_payment_method is True


async def test_hard_decline_waits_for_a_new_payment_method(lane: Lane) -> None:
    sub, first = await lane.start(script=("paid", "stolen_card"))
    assert first.current_period_end is not None

    await lane.skip_to(first.current_period_end + timedelta(minutes=1))
    state = await sub.state()
    assert state.status == "past_due"
    assert state.dunning.awaiting_payment_method is True
    assert state.dunning.next_retry_at is None
    # No timer runs: the workflow waits for a new payment method and nothing else.
    assert await sub.pending_timers() == 0

    # Past every retry the schedule would have made: still the one attempt.
    await lane.skip_to(first.current_period_end + timedelta(days=20))
    assert [attempt for _, attempt in sub.attempts("subscription_cycle")] == [1]
    assert (await sub.state()).status == "past_due"

    await sub.handle.signal(
        SubscriptionWorkflow.payment_method_changed, PaymentMethodChanged(payment_method="pm_new")
    )
    # The retry runs at once, at the signal: no time needs to pass.
    await eventually(lambda: sub.view().status == "active", what="recovery projected")
    state = await sub.state()
    assert state == sub.view()
    assert [attempt for _, attempt in sub.attempts("subscription_cycle")] == [1, 2]
    assert sub.events()[-2:] == ["invoice.paid", "subscription.recovered"]
