"""What a subscription waits for next, and doing it when it falls due.

The run loop asks `next_step` for the step and its due time, waits for that time (or for
a message that changes the answer), then runs `perform`. Each status has one step.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from domain.status import SubscriptionStatus as S
from workflows.lifecycle import discount, dunning, pause, renewal, start, trial
from workflows.lifecycle.context import Subscription


class Step(StrEnum):
    TRIAL_WILL_END = "trial_will_end"
    TRIAL_END = "trial_end"
    PERIOD_END = "period_end"
    AWAIT_PAYMENT_METHOD = "await_payment_method"  # only a message moves it on
    DUNNING_RETRY = "dunning_retry"
    INCOMPLETE_EXPIRE = "incomplete_expire"
    RESUME = "resume"
    DISCOUNT_END = "discount_end"  # a repeating discount's months are over
    NONE = "none"  # terminal: nothing is due any more


def next_step(sub: Subscription) -> tuple[Step, datetime | None]:
    """The step the subscription waits for, and when it is due (None: only a message). The
    end of a repeating discount comes first when it is due no later than the status's step
    (an invoice made at that very time is not discounted either way)."""
    step, due = _status_step(sub)
    ends = discount.discount_end(sub)
    if ends is not None and step != Step.NONE and (due is None or ends <= due):
        return Step.DISCOUNT_END, ends
    return step, due


def _status_step(sub: Subscription) -> tuple[Step, datetime | None]:
    s = sub.state
    policy = sub.inp.policy
    if s.status == S.TRIALING:
        assert s.trial_end is not None
        warn_at = s.trial_end - timedelta(days=policy.trial_will_end_days)
        if not s.trial_will_end_sent:
            return Step.TRIAL_WILL_END, warn_at
        return Step.TRIAL_END, s.trial_end
    if s.status == S.ACTIVE:
        return Step.PERIOD_END, renewal.renews_at(sub)
    if s.status in (S.PAST_DUE, S.UNPAID):
        if s.dunning.awaiting_payment_method or s.dunning.next_retry_at is None:
            return Step.AWAIT_PAYMENT_METHOD, None
        return Step.DUNNING_RETRY, s.dunning.next_retry_at
    if s.status == S.INCOMPLETE:
        expires_at = s.created_at + timedelta(hours=policy.incomplete_expiry_hours)
        retry_at = s.dunning.next_retry_at
        if retry_at is not None and retry_at < expires_at:
            return Step.DUNNING_RETRY, retry_at  # a new payment method arrived
        return Step.INCOMPLETE_EXPIRE, expires_at
    if s.status == S.PAUSED:
        return Step.RESUME, s.pause.resumes_at if s.pause else None
    return Step.NONE, None


async def perform(sub: Subscription, step: Step) -> bool:
    """Do the due step; True when a new period began (a reason to continue as new)."""
    match step:
        case Step.TRIAL_WILL_END:
            await trial.warn_trial_will_end(sub)
            return False
        case Step.TRIAL_END:
            return await trial.end_trial(sub)
        case Step.PERIOD_END:
            return await renewal.period_end(sub)
        case Step.DUNNING_RETRY:
            await dunning.retry_open_invoice(sub, actor=None)
            return False
        case Step.INCOMPLETE_EXPIRE:
            await start.expire_incomplete(sub)
            return False
        case Step.RESUME:
            await pause.resume_now(sub, actor=None)
            return True
        case Step.DISCOUNT_END:
            await discount.end_discount(sub)
            return False
    return False
