"""Plan terms and price-per-time comparison."""

import pytest
from pydantic import ValidationError

from domain.errors import DomainError
from domain.periods import Interval
from domain.plans import PlanTerms, compare_price_per_time


def plan(amount: int, interval: Interval = Interval.MONTH, count: int = 1) -> PlanTerms:
    return PlanTerms(
        plan_id=f"p{amount}", amount=amount, currency="usd", interval=interval, interval_count=count
    )


def test_plan_terms_normalises_and_defaults() -> None:
    terms = PlanTerms.model_validate(
        {"plan_id": "pro", "amount": 1000, "currency": "USD", "interval": "year"}
    )
    assert terms.currency == "usd"
    assert terms.interval is Interval.YEAR
    assert terms.interval_count == 1
    assert terms.features == []


def test_plan_terms_is_frozen() -> None:
    terms = plan(1000)
    with pytest.raises(ValidationError):
        terms.amount = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "overrides",
    [
        {"amount": -1},
        {"amount": 10.0},
        {"amount": "1000"},
        {"currency": "dollars"},
        {"interval": "week"},
        {"interval_count": 0},
        {"plan_id": ""},
    ],
)
def test_plan_terms_rejects_invalid(overrides: dict[str, object]) -> None:
    data: dict[str, object] = {
        "plan_id": "pro",
        "amount": 1000,
        "currency": "usd",
        "interval": "month",
    }
    with pytest.raises(ValidationError):
        PlanTerms.model_validate(data | overrides)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (plan(1000), plan(2000), -1),
        (plan(2000), plan(1000), 1),
        (plan(1000), plan(12_000, Interval.YEAR), 0),
        (plan(10_000, Interval.YEAR), plan(1000), -1),
        (plan(2900, Interval.MONTH, 3), plan(1000), -1),
        (plan(3000, Interval.MONTH, 3), plan(1000), 0),
        (plan(25_000, Interval.YEAR, 2), plan(1000, Interval.MONTH, 1), 1),
        (plan(0), plan(1), -1),
    ],
)
def test_compare_price_per_time(a: PlanTerms, b: PlanTerms, expected: int) -> None:
    assert compare_price_per_time(a, b) == expected
    assert compare_price_per_time(b, a) == -expected


def test_compare_price_per_time_rejects_mixed_currencies() -> None:
    eur = PlanTerms(plan_id="e", amount=1000, currency="eur", interval=Interval.MONTH)
    with pytest.raises(DomainError) as info:
        compare_price_per_time(plan(1000), eur)
    assert info.value.code == "currency_mismatch"
