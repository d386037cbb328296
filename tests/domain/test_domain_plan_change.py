"""Plan change guardrails and decisions."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from domain.errors import DomainError
from domain.periods import Interval
from domain.plan_change import (
    ChangeDecision,
    ChangeKind,
    ChangeWhen,
    PlanChangePolicy,
    ProrationBehavior,
    decide_plan_change,
)
from domain.plans import PlanTerms
from domain.status import SubscriptionStatus

NOW = ChangeWhen.NOW
PERIOD_END = ChangeWhen.PERIOD_END
ALWAYS = ProrationBehavior.ALWAYS_INVOICE
CREATE = ProrationBehavior.CREATE_PRORATIONS
NONE = ProrationBehavior.NONE


def plan(
    plan_id: str,
    amount: int,
    interval: Interval = Interval.MONTH,
    count: int = 1,
    currency: str = "usd",
) -> PlanTerms:
    return PlanTerms(
        plan_id=plan_id,
        amount=amount,
        currency=currency,
        interval=interval,
        interval_count=count,
    )


BASIC = plan("basic", 1000)
PRO = plan("pro", 2000)
BASIC_TWIN = plan("basic-v2", 1000)
BASIC_YEARLY = plan("basic-yearly", 10_000, Interval.YEAR)


@contextmanager
def raises_code(code: str, status: int) -> Iterator[None]:
    with pytest.raises(DomainError) as info:
        yield
    assert (info.value.code, info.value.http_status) == (code, status)


def test_same_plan() -> None:
    with raises_code("same_plan", 409):
        decide_plan_change(BASIC, plan("basic", 5000), "active", 0)


def test_currency_mismatch() -> None:
    with raises_code("currency_mismatch", 422):
        decide_plan_change(BASIC, plan("pro-eur", 2000, currency="eur"), "active", 0)


def test_past_due() -> None:
    with raises_code("subscription_past_due", 409):
        decide_plan_change(BASIC, PRO, "past_due", 0)


@pytest.mark.parametrize(
    "status", ["canceled", "incomplete", "incomplete_expired", "paused", "unpaid"]
)
def test_not_changeable(status: str) -> None:
    with raises_code("subscription_not_changeable", 409):
        decide_plan_change(BASIC, PRO, status, 0)


def test_too_many_changes() -> None:
    decide_plan_change(BASIC, PRO, "active", 2)
    with raises_code("too_many_changes", 409):
        decide_plan_change(BASIC, PRO, "active", 3)
    with raises_code("too_many_changes", 409):
        decide_plan_change(
            BASIC, PRO, "active", 1, policy=PlanChangePolicy(max_changes_per_period=1)
        )


def test_status_is_checked_before_other_guardrails() -> None:
    with raises_code("subscription_past_due", 409):
        decide_plan_change(BASIC, BASIC, "past_due", 99)


def test_unknown_status_and_negative_count_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        decide_plan_change(BASIC, PRO, "bogus", 0)
    with pytest.raises(ValueError):
        decide_plan_change(BASIC, PRO, "active", -1)


@pytest.mark.parametrize("status", ["active", "trialing", SubscriptionStatus.ACTIVE])
def test_upgrade_defaults_to_now_and_invoice(status: str) -> None:
    assert decide_plan_change(BASIC, PRO, status, 0) == ChangeDecision(
        ChangeKind.UPGRADE, NOW, ALWAYS, new_anchor=False
    )


def test_downgrade_defaults_to_period_end_without_proration() -> None:
    assert decide_plan_change(PRO, BASIC, "active", 0) == ChangeDecision(
        ChangeKind.DOWNGRADE, PERIOD_END, NONE, new_anchor=False
    )


def test_lateral_is_treated_like_an_upgrade() -> None:
    assert decide_plan_change(BASIC, BASIC_TWIN, "active", 0) == ChangeDecision(
        ChangeKind.LATERAL, NOW, ALWAYS, new_anchor=False
    )


def test_same_price_per_time_but_different_interval_is_an_interval_change() -> None:
    yearly_same_rate = plan("basic-yearly-12", 12_000, Interval.YEAR)
    decision = decide_plan_change(BASIC, yearly_same_rate, "active", 0)
    assert decision.kind == ChangeKind.INTERVAL_CHANGE


def test_interval_change_defaults_to_now_with_new_anchor() -> None:
    assert decide_plan_change(BASIC, BASIC_YEARLY, "active", 0) == ChangeDecision(
        ChangeKind.INTERVAL_CHANGE, NOW, ALWAYS, new_anchor=True
    )
    # Cheaper per month, but still an interval change, not a downgrade.
    assert decide_plan_change(BASIC_YEARLY, BASIC, "active", 0).kind == ChangeKind.INTERVAL_CHANGE


def test_interval_change_at_period_end_keeps_anchor() -> None:
    decision = decide_plan_change(BASIC, BASIC_YEARLY, "active", 0, requested_when=PERIOD_END)
    assert decision == ChangeDecision(ChangeKind.INTERVAL_CHANGE, PERIOD_END, NONE, False)


def test_twelve_monthly_equals_yearly_is_not_an_interval_change() -> None:
    every_twelve_months = plan("annual-ish", 20_000, Interval.MONTH, 12)
    decision = decide_plan_change(BASIC_YEARLY, every_twelve_months, "active", 0)
    assert decision.kind == ChangeKind.UPGRADE


def test_requested_values_override_defaults() -> None:
    assert decide_plan_change(PRO, BASIC, "active", 0, requested_when=NOW) == ChangeDecision(
        ChangeKind.DOWNGRADE, NOW, CREATE, False
    )
    assert decide_plan_change(
        PRO, BASIC, "active", 0, requested_when=NOW, requested_proration=ALWAYS
    ) == ChangeDecision(ChangeKind.DOWNGRADE, NOW, ALWAYS, False)
    assert decide_plan_change(BASIC, PRO, "active", 0, requested_proration=NONE) == ChangeDecision(
        ChangeKind.UPGRADE, NOW, NONE, False
    )
    assert decide_plan_change(BASIC, PRO, "active", 0, requested_when=PERIOD_END) == ChangeDecision(
        ChangeKind.UPGRADE, PERIOD_END, NONE, False
    )


def test_period_end_change_is_never_prorated() -> None:
    decision = decide_plan_change(
        PRO, BASIC, "active", 0, requested_when=PERIOD_END, requested_proration=ALWAYS
    )
    assert decision.proration == NONE


def test_policy_defaults_are_used() -> None:
    policy = PlanChangePolicy(upgrade_when=PERIOD_END, upgrade_proration=CREATE, downgrade_when=NOW)
    assert decide_plan_change(BASIC, PRO, "active", 0, policy=policy) == ChangeDecision(
        ChangeKind.UPGRADE, PERIOD_END, NONE, False
    )
    assert decide_plan_change(
        BASIC, PRO, "active", 0, requested_when=NOW, policy=policy
    ) == ChangeDecision(ChangeKind.UPGRADE, NOW, CREATE, False)
    assert decide_plan_change(PRO, BASIC, "active", 0, policy=policy) == ChangeDecision(
        ChangeKind.DOWNGRADE, NOW, CREATE, False
    )


def test_default_policy_values() -> None:
    policy = PlanChangePolicy()
    assert policy.max_changes_per_period == 3
    assert (policy.upgrade_when, policy.upgrade_proration) == (NOW, ALWAYS)
    assert policy.downgrade_when == PERIOD_END
