"""Invoice lines and proration line items."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from domain import errors
from domain._time import as_utc
from domain.periods import interval_months
from domain.plans import PlanTerms
from domain.proration import prorate


class LineKind(StrEnum):
    """What an invoice line charges or credits for."""

    SUBSCRIPTION = "subscription"
    PRORATION = "proration"
    CREDIT = "credit"
    # A metered item's usage of a period that has ended (billed in arrears).
    USAGE = "usage"
    # A coupon's discount on the invoice (negative).
    DISCOUNT = "discount"
    # Customer balance: negative when credit pays part of the invoice, positive when a net
    # credit of the invoice's other lines moves into the balance (the total stays >= 0).
    BALANCE = "balance"


class InvoiceLine(BaseModel):
    """One invoice line; `amount` is in minor units and negative for credits."""

    model_config = ConfigDict(frozen=True)

    kind: LineKind
    description: str
    amount: Annotated[int, Field(strict=True)]
    period_start: AwareDatetime
    period_end: AwareDatetime
    # The plan a subscription, usage or proration line bills for (what a coupon limited to
    # some plans looks at); None on other lines and on lines from before it was recorded.
    plan_id: str | None = None

    @field_validator("period_start", "period_end")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return as_utc(value, "period bound")

    @model_validator(mode="after")
    def _check_period(self) -> "InvoiceLine":
        if self.period_end < self.period_start:
            raise ValueError("period_end must not be before period_start")
        return self


def proration_lines(
    old: PlanTerms,
    new: PlanTerms,
    period_start: datetime,
    period_end: datetime,
    at: datetime,
    *,
    old_name: str | None = None,
    new_name: str | None = None,
) -> list[InvoiceLine]:
    """Credit for unused time on `old` and debit for remaining time on `new`, from `at`.

    Lines name each plan as every other line does, by its name (the id without one).

    Zero-amount lines are dropped. Both plans must share currency and period length:
    prorating a yearly price over a monthly period would charge the wrong amount.
    """
    if old.currency != new.currency:
        raise errors.CURRENCY_MISMATCH(f"Cannot prorate {old.currency} against {new.currency}")
    if interval_months(old.interval, old.interval_count) != interval_months(
        new.interval, new.interval_count
    ):
        raise ValueError("proration needs equal period lengths; interval changes start anew")
    proration = prorate(old.amount, new.amount, period_start, period_end, at)
    start = as_utc(at, "at")
    end = as_utc(period_end, "period_end")
    day = start.date().isoformat()
    candidates = (
        (proration.credit, f"Unused time on {old_name or old.plan_id} after {day}"),
        (proration.debit, f"Remaining time on {new_name or new.plan_id} after {day}"),
    )
    return [
        InvoiceLine(
            kind=LineKind.PRORATION,
            description=description,
            amount=amount,
            period_start=start,
            period_end=end,
        )
        for amount, description in candidates
        if amount != 0
    ]
