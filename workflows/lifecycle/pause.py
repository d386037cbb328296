"""Pause and resume.

Only an active subscription without a pending cancel can be paused. Access stops at once
and the paid time left in the period is credited to the invoice that resumes it. A pause
lasts until its `resumes_at` (at most `MAX_PAUSE`) or until resumed; resuming starts a new
period now, anchored there, and charges it (after a change scheduled while paused has
taken effect): paid, active again; declined, dunning. Metered items' usage up to the pause
is billed on the resuming invoice; the paused stretch has none (events are refused).
"""

from __future__ import annotations

from datetime import timedelta

from domain import errors
from domain.contracts import EventDraft, PauseView
from domain.invoices import InvoiceLine
from domain.status import SubscriptionStatus as S
from workflows.errors import rejected
from workflows.lifecycle.context import Subscription
from workflows.lifecycle.dunning import enter_dunning
from workflows.lifecycle.item_lines import unused_credit
from workflows.lifecycle.renewal import apply_pending_plan, next_invoice
from workflows.lifecycle.usage import arrears_lines, leave_usage
from workflows.messages import CarriedState, PauseRequest
from workflows.plan_changes import period_after

MAX_PAUSE = timedelta(days=730)


def validate_pause(sub: Subscription, req: PauseRequest) -> None:
    if sub.status != S.ACTIVE:
        raise rejected(
            errors.SUBSCRIPTION_NOT_PAUSABLE(
                f"Only an active subscription can be paused (it is {sub.status})"
            )
        )
    if sub.state.cancel_at_period_end:
        raise rejected(
            errors.SUBSCRIPTION_CANCEL_PENDING(
                "The subscription cancels at period end; reactivate it before pausing"
            )
        )
    if req.resumes_at is not None and req.resumes_at <= sub.clock.now():
        raise rejected(errors.INVALID_RESUMES_AT("resumes_at must be in the future"))
    if req.resumes_at is not None and req.resumes_at > sub.clock.now() + MAX_PAUSE:
        raise rejected(errors.INVALID_RESUMES_AT(f"A pause may last at most {MAX_PAUSE.days} days"))


async def start_pause(sub: Subscription, req: PauseRequest) -> None:
    s = sub.state
    now = sub.clock.now()
    assert s.current_period_start is not None and s.current_period_end is not None
    # Access stops now, so the paid time left in the period is credited to the invoice
    # that resumes the subscription.
    credits = unused_credit(sub, s.current_period_start, s.current_period_end, now)
    s.pending_proration_lines += credits
    # The metered items' usage up to the pause is billed by the invoice that resumes it.
    leave_usage(sub, [], now, restarts=True)
    s.status = S.PAUSED
    s.pause = PauseView(paused_at=now, resumes_at=req.resumes_at)
    sub.dirty = True
    await sub.sync(
        [
            sub.event(
                "subscription.paused",
                resumes_at=req.resumes_at,
                credit=sum(line.amount for line in credits),
                actor=req.actor,
            )
        ],
        features=[],
    )


def validate_resume(sub: Subscription) -> None:
    if sub.status != S.PAUSED:
        raise rejected(errors.SUBSCRIPTION_NOT_PAUSED(f"Subscription is {sub.status}, not paused"))


async def resume_now(sub: Subscription, actor: str | None) -> None:
    """A new period starts now and is charged; a change scheduled while paused applies."""
    s = sub.state
    now = sub.clock.now()
    s.pause = None
    events = [sub.event("subscription.resumed", actor=actor)]
    events += apply_pending_plan(sub, now, when="resume")
    s.billing_cycle_anchor = now
    start, end = period_after(s.plan, now, now)
    usage: list[InvoiceLine] = []
    invoice_id = None
    if s.unbilled_usage:
        invoice_id = sub.new_id("in")
        usage = await arrears_lines(sub, invoice_id, [], None, now)
    invoice = next_invoice(sub, "subscription_resume", start, end, usage, invoice_id)
    sub.start_period(start, end)
    outcome = await sub.charge(invoice, 1, actor=actor)
    if outcome.status == "paid":
        await sub.settle_paid(invoice, outcome, events, _active)
        return
    await enter_dunning(sub, invoice, outcome, extra=events)


def _active(state: CarriedState) -> list[EventDraft]:
    state.status = S.ACTIVE
    return []
