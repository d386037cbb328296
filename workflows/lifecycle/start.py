"""The first decision: a trial, or the first charge.

A subscription with trial days starts trialing (nothing charged; see `trial`). Without,
the first period is invoiced at once: paid, it is active; declined, it is incomplete, and
stays so until a new payment method pays it (`dunning.retry_open_invoice`) or the
policy's expiry ends it.
"""

from __future__ import annotations

from domain.contracts import EventDraft
from domain.periods import next_boundary_after
from domain.status import SubscriptionStatus as S
from workflows.lifecycle.context import Subscription, WhenPaid
from workflows.lifecycle.item_lines import first_lines
from workflows.messages import CarriedState
from workflows.patches import CHARGE_PROJECTS_FIRST_PAYMENT
from workflows.projection import discount_applied, trial_start


async def begin(sub: Subscription) -> None:
    """Trial, or the first charge; decides the state the creating API call returns."""
    s = sub.state
    now = sub.clock.now()
    if s.status == S.TRIALING:
        await sub.project(trial_start(sub.inp, s, now, sub.new_id))
        return
    created = [
        sub.event("subscription.created", plan_id=s.plan.plan_id),
        *discount_applied(sub.inp, s, now, sub.new_id),
    ]
    start = now
    end = next_boundary_after(s.billing_cycle_anchor, s.plan.interval, s.plan.interval_count, now)
    lines = first_lines(sub, s.billing_cycle_anchor, start, end)
    invoice = sub.invoice("subscription_create", lines, start, end)
    sub.start_period(start, end)
    outcome = await sub.charge_opening(
        CHARGE_PROJECTS_FIRST_PAYMENT, invoice, created, activated(sub)
    )
    if outcome.status == "paid":
        return
    s.status = S.INCOMPLETE
    s.open_invoice = invoice
    s.incomplete_attempts = 1
    await sub.sync(
        [*created, sub.failed_event(invoice, outcome), sub.event("subscription.incomplete")],
        features=[],
    )


def activated(sub: Subscription) -> WhenPaid:
    """The paid case of a first payment (at creation or when the trial ends): active."""

    def activate(state: CarriedState) -> list[EventDraft]:
        state.status = S.ACTIVE
        return [sub.event("subscription.activated")]

    return activate


async def expire_incomplete(sub: Subscription) -> None:
    """The first payment was never made in time: the subscription ends, its invoice void."""
    s = sub.state
    s.status = S.INCOMPLETE_EXPIRED
    void = {s.open_invoice.id: "void"} if s.open_invoice else None
    s.open_invoice = None
    await sub.sync([sub.event("subscription.incomplete_expired")], features=[], invoice_status=void)
