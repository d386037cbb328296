"""Deciding how and when a plan change is applied."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from domain import errors
from domain.periods import interval_months
from domain.plans import PlanTerms, compare_price_per_time
from domain.status import TERMINAL, SubscriptionStatus


class ChangeWhen(StrEnum):
    """When a plan change takes effect."""

    NOW = "now"
    PERIOD_END = "period_end"


class ProrationBehavior(StrEnum):
    """How an immediate change is charged."""

    ALWAYS_INVOICE = "always_invoice"
    CREATE_PRORATIONS = "create_prorations"
    NONE = "none"


class ChangeKind(StrEnum):
    """Classification of a plan change by price per time and period length."""

    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    INTERVAL_CHANGE = "interval_change"
    LATERAL = "lateral"


class PlanChangePolicy(BaseModel):
    """Merchant defaults for plan changes."""

    model_config = ConfigDict(frozen=True)

    max_changes_per_period: Annotated[int, Field(ge=1)] = 3
    upgrade_when: ChangeWhen = ChangeWhen.NOW
    upgrade_proration: ProrationBehavior = ProrationBehavior.ALWAYS_INVOICE
    downgrade_when: ChangeWhen = ChangeWhen.PERIOD_END
    # Used only for a downgrade applied now: the net is a credit, so carry it forward
    # to the next invoice rather than issuing a negative invoice.
    downgrade_proration: ProrationBehavior = ProrationBehavior.CREATE_PRORATIONS


@dataclass(frozen=True)
class ChangeDecision:
    """How a plan change will be applied."""

    kind: ChangeKind
    when: ChangeWhen
    proration: ProrationBehavior
    new_anchor: bool

    def summary(self) -> dict[str, str]:
        """The decision as a change's answer shows it."""
        return {"kind": self.kind.value, "when": self.when.value, "proration": self.proration.value}


DEFAULT_PLAN_CHANGE_POLICY = PlanChangePolicy()

_NOT_CHANGEABLE = TERMINAL | {
    SubscriptionStatus.INCOMPLETE,
    SubscriptionStatus.PAUSED,
    # Dunning gave up and access is revoked; the debt must be settled first.
    SubscriptionStatus.UNPAID,
}


def classify_change(current: PlanTerms, new: PlanTerms) -> ChangeKind:
    """Classify a change; a different period length wins over any price difference."""
    current_months = interval_months(current.interval, current.interval_count)
    new_months = interval_months(new.interval, new.interval_count)
    if current_months != new_months:
        return ChangeKind.INTERVAL_CHANGE
    order = compare_price_per_time(new, current)
    if order > 0:
        return ChangeKind.UPGRADE
    if order < 0:
        return ChangeKind.DOWNGRADE
    return ChangeKind.LATERAL


def _check_guardrails(
    current: PlanTerms, new: PlanTerms, status: str, changes_this_period: int, limit: int
) -> None:
    if changes_this_period < 0:
        raise ValueError(f"changes_this_period must be >= 0, got {changes_this_period}")
    try:
        state = SubscriptionStatus(status)
    except ValueError:
        raise ValueError(f"unknown subscription status: {status!r}") from None
    if state == SubscriptionStatus.PAST_DUE:
        raise errors.SUBSCRIPTION_PAST_DUE("Settle the outstanding invoice before changing plans")
    if state in _NOT_CHANGEABLE:
        raise errors.SUBSCRIPTION_NOT_CHANGEABLE(
            f"A {state.value} subscription cannot change plans"
        )
    check_plan_and_count(current, new, changes_this_period, limit)


def check_plan_and_count(
    current: PlanTerms, new: PlanTerms, changes_this_period: int, limit: int
) -> None:
    """The guardrails that hold in every status: a different plan, the same currency, and
    no more than `limit` changes in the period."""
    if current.plan_id == new.plan_id:
        raise errors.SAME_PLAN(f"Subscription is already on plan {new.plan_id}")
    if current.currency != new.currency:
        raise errors.CURRENCY_MISMATCH(
            f"Cannot change from a {current.currency} plan to a {new.currency} plan"
        )
    if changes_this_period >= limit:
        raise errors.TOO_MANY_CHANGES(f"At most {limit} plan changes are allowed per period")


def decide_plan_change(
    current: PlanTerms,
    new: PlanTerms,
    status: str,
    changes_this_period: int,
    requested_when: ChangeWhen | None = None,
    requested_proration: ProrationBehavior | None = None,
    policy: PlanChangePolicy = DEFAULT_PLAN_CHANGE_POLICY,
) -> ChangeDecision:
    """Validate a plan change and decide when it applies and how it is charged.

    Requested values override the policy defaults. A change at period end is never
    prorated: there is no remaining time on the old plan to credit.
    """
    _check_guardrails(current, new, status, changes_this_period, policy.max_changes_per_period)
    kind = classify_change(current, new)
    if kind == ChangeKind.DOWNGRADE:
        when = requested_when or policy.downgrade_when
        default_proration = policy.downgrade_proration
    elif kind == ChangeKind.INTERVAL_CHANGE:
        # The old and new periods do not line up, so by default start a new period now.
        when = requested_when or ChangeWhen.NOW
        default_proration = policy.upgrade_proration
    else:
        when = requested_when or policy.upgrade_when
        default_proration = policy.upgrade_proration
    return settled_decision(kind, when, requested_proration or default_proration)


def settled_decision(
    kind: ChangeKind, when: ChangeWhen, proration: ProrationBehavior
) -> ChangeDecision:
    """The decision once `when` is known: nothing at period end is prorated (no time is
    left on the old terms to credit), and an interval change now restarts the period."""
    return ChangeDecision(
        kind=kind,
        when=when,
        proration=ProrationBehavior.NONE if when == ChangeWhen.PERIOD_END else proration,
        new_anchor=kind == ChangeKind.INTERVAL_CHANGE and when == ChangeWhen.NOW,
    )
