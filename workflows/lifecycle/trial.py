"""A trial: a warning before it ends, then its end, when the first period is charged.

Nothing is charged while trialing. Some days before the end (policy) the customer is told
the trial will end; at the end the first period is invoiced: paid, the subscription is
active; with no payment method at all it is canceled (design rule); declined, it enters
dunning. A trial canceled at period end ends with the trial, uncharged. An operator may
extend a trial, up to `MAX_TRIAL` from now.
"""

from __future__ import annotations

from datetime import timedelta

from domain import errors
from domain.status import SubscriptionStatus as S
from workflows.errors import rejected
from workflows.lifecycle.cancel import cancel_now
from workflows.lifecycle.context import Subscription
from workflows.lifecycle.dunning import enter_dunning
from workflows.lifecycle.item_lines import opening
from workflows.lifecycle.start import activated
from workflows.messages import ExtendTrialRequest
from workflows.patches import CHARGE_PROJECTS_FIRST_PAYMENT

MAX_TRIAL = timedelta(days=730)  # as for `trial_days` when subscribing


async def warn_trial_will_end(sub: Subscription) -> None:
    sub.state.trial_will_end_sent = True
    await sub.sync([sub.event("subscription.trial_will_end", trial_end=sub.state.trial_end)])


async def end_trial(sub: Subscription) -> bool:
    """Charge the first period; True when it was paid (a new period began)."""
    s = sub.state
    assert s.trial_end is not None
    if s.cancel_at_period_end:
        await cancel_now(sub, reason="cancel_at_period_end", actor=None, settle=True)
        return False
    start = s.trial_end
    lines, end = opening(sub, s.billing_cycle_anchor, start)
    invoice = sub.invoice("subscription_cycle", lines, start, end)
    sub.start_period(start, end)
    outcome = await sub.charge_opening(CHARGE_PROJECTS_FIRST_PAYMENT, invoice, [], activated(sub))
    if outcome.status == "paid":
        return True
    if outcome.no_payment_method:
        # Design rule: a trial that ends with no way to pay is canceled.
        await cancel_now(
            sub, reason="trial_ended_without_payment_method", actor=None, void=invoice.id
        )
        return False
    await enter_dunning(sub, invoice, outcome)
    return False


def validate_extend_trial(sub: Subscription, req: ExtendTrialRequest) -> None:
    s = sub.state
    if s.status != S.TRIALING:
        raise rejected(
            errors.SUBSCRIPTION_NOT_TRIALING(f"Subscription is {s.status}, not trialing")
        )
    if req.trial_end.tzinfo is None or s.trial_end is None or req.trial_end <= s.trial_end:
        raise rejected(
            errors.INVALID_TRIAL_END("trial_end must be a UTC time after the current trial end")
        )
    if req.trial_end > sub.clock.now() + MAX_TRIAL:
        raise rejected(
            errors.INVALID_TRIAL_END(f"A trial may last at most {MAX_TRIAL.days} days from now")
        )


async def move_trial_end(sub: Subscription, req: ExtendTrialRequest) -> None:
    """A later trial end; the default anchor follows it, and the warning is due again."""
    s = sub.state
    old = s.trial_end
    if s.billing_cycle_anchor == old:
        s.billing_cycle_anchor = req.trial_end
    s.trial_end = s.current_period_end = req.trial_end
    warn_at = req.trial_end - timedelta(days=sub.inp.policy.trial_will_end_days)
    if warn_at > sub.clock.now():
        s.trial_will_end_sent = False
    sub.dirty = True
    await sub.sync(
        [
            sub.event(
                "subscription.trial_extended",
                from_trial_end=old,
                trial_end=req.trial_end,
                actor=req.actor,
            )
        ],
        features=sub.features(),
    )
