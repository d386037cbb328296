"""Plan terms: the price and cadence a subscription is billed at."""

from collections import Counter
from collections.abc import Iterable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain import errors
from domain.errors import DomainError
from domain.money import normalize_currency
from domain.periods import Interval, interval_months


class PlanTerms(BaseModel):
    """Immutable price terms of a plan; `amount` is in minor units per period."""

    model_config = ConfigDict(frozen=True)

    plan_id: Annotated[str, Field(min_length=1)]
    # Strict so floats and numeric strings never sneak into money.
    amount: Annotated[int, Field(ge=0, strict=True)]
    currency: str
    interval: Interval
    interval_count: Annotated[int, Field(ge=1)] = 1
    features: list[str] = Field(default_factory=list)

    @field_validator("currency")
    @classmethod
    def _normalize_currency(cls, value: str) -> str:
        # Re-raise as ValueError so pydantic reports a regular ValidationError.
        try:
            return normalize_currency(value)
        except DomainError as exc:
            raise ValueError(exc.message) from exc


def duplicate_features(features: Iterable[str]) -> list[str]:
    """The features named more than once (a plan grants each feature once)."""
    counts = Counter(features)
    return [feature for feature, count in counts.items() if count > 1]


def distinct_features(features: Iterable[str]) -> list[str]:
    """`features` without repeats, in first-seen order."""
    return list(dict.fromkeys(features))


def compare_price_per_time(a: PlanTerms, b: PlanTerms) -> int:
    """Compare price per month of `a` and `b`: -1, 0 or 1 (exact, by cross-multiplication)."""
    if a.currency != b.currency:
        raise errors.CURRENCY_MISMATCH(f"Cannot compare {a.currency} and {b.currency} prices")
    left = a.amount * interval_months(b.interval, b.interval_count)
    right = b.amount * interval_months(a.interval, a.interval_count)
    return (left > right) - (left < right)
