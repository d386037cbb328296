"""Deciding how and when a change of a subscription's items applies.

A plan change is the one-item case: the same guardrails (status, count per period,
currency) and the same policy (increase now and invoiced at once, decrease at period end,
a new period length now with a new anchor).
"""

from __future__ import annotations

from collections.abc import Sequence

from domain import errors
from domain.items import Item, check_items, classify_items_change, item_terms, same_items
from domain.plan_change import (
    DEFAULT_PLAN_CHANGE_POLICY,
    ChangeDecision,
    ChangeKind,
    ChangeWhen,
    PlanChangePolicy,
    ProrationBehavior,
    settled_decision,
)
from domain.status import SubscriptionStatus

_NOT_CHANGEABLE = frozenset(
    {
        SubscriptionStatus.CANCELED,
        SubscriptionStatus.INCOMPLETE,
        SubscriptionStatus.INCOMPLETE_EXPIRED,
        SubscriptionStatus.PAUSED,
        SubscriptionStatus.UNPAID,
    }
)


def check_items_change(
    old: Sequence[Item],
    new: Sequence[Item],
    status: str,
    changes_this_period: int,
    limit: int,
    *,
    same_code: str = "same_items",
) -> ChangeKind:
    """Validate a change of items; returns its kind. Raises DomainError with the code the
    API answers: a set that is no valid set (422), another currency (422), the same items,
    too many changes this period, a status that allows no change, an increase while
    `past_due` (all 409)."""
    if changes_this_period < 0:
        raise ValueError(f"changes_this_period must be >= 0, got {changes_this_period}")
    state = SubscriptionStatus(status)
    if state in _NOT_CHANGEABLE:
        raise errors.SUBSCRIPTION_NOT_CHANGEABLE(
            f"A {state.value} subscription cannot change items"
        )
    check_items(item_terms(new))
    if old[0].plan.currency != new[0].plan.currency:
        raise errors.CURRENCY_MISMATCH(
            f"Cannot change from {old[0].plan.currency} items to {new[0].plan.currency} items"
        )
    if same_items(old, new):
        raise errors.DECLARED[same_code]("The subscription already has exactly these items")
    kind = classify_items_change(old, new)
    if state == SubscriptionStatus.PAST_DUE and kind != ChangeKind.DOWNGRADE:
        raise errors.SUBSCRIPTION_PAST_DUE("Settle the outstanding invoice before adding to it")
    if changes_this_period >= limit:
        raise errors.TOO_MANY_CHANGES(
            f"At most {limit} plan or item changes are allowed per period"
        )
    return kind


def decide_items_change(
    old: Sequence[Item],
    new: Sequence[Item],
    status: str,
    changes_this_period: int,
    requested_when: ChangeWhen | None = None,
    requested_proration: ProrationBehavior | None = None,
    policy: PlanChangePolicy = DEFAULT_PLAN_CHANGE_POLICY,
    *,
    lateral_when: ChangeWhen = ChangeWhen.PERIOD_END,
    decrease_proration: ProrationBehavior | None = None,
    same_code: str = "same_items",
) -> ChangeDecision:
    """Validate a change and decide when it applies and how it is charged.

    An increase of the recurring total applies now (`policy.upgrade_when`) and is invoiced
    at once; a decrease waits for the period end (`policy.downgrade_when`) unless asked
    for now, when its net credit goes to the balance; an equal total applies at
    `lateral_when` (a plan change keeps its rule: now); a decrease now is charged as
    `decrease_proration` says (default: the policy's). A different period length applies
    now with a new anchor. During a trial nothing was charged: now, with no proration.
    Nothing at period end is prorated."""
    kind = check_items_change(
        old, new, status, changes_this_period, policy.max_changes_per_period, same_code=same_code
    )
    if status == SubscriptionStatus.TRIALING:
        return ChangeDecision(
            kind=kind, when=ChangeWhen.NOW, proration=ProrationBehavior.NONE, new_anchor=False
        )
    if kind == ChangeKind.DOWNGRADE:
        when = requested_when or policy.downgrade_when
        default_proration = decrease_proration or policy.downgrade_proration
    elif kind == ChangeKind.INTERVAL_CHANGE:
        when = requested_when or ChangeWhen.NOW
        default_proration = policy.upgrade_proration
    elif kind == ChangeKind.UPGRADE:
        when = requested_when or policy.upgrade_when
        default_proration = policy.upgrade_proration
    else:
        when = requested_when or lateral_when
        default_proration = policy.upgrade_proration
    return settled_decision(kind, when, requested_proration or default_proration)
