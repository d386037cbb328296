"""Coupons and promotion codes: their terms and whether one may be redeemed.

A coupon is a percent or an amount off, for one invoice (`once`), for invoices created during
N calendar months (`repeating`) or for every invoice (`forever`), optionally for some plans
only. A promotion code is a customer-facing text over a coupon with limits of its own. Pure
rules: the caller reads the stored coupon, code and customer history and passes the values.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain import errors
from domain._time import as_utc
from domain.errors import DomainError
from domain.money import format_amount

# Percent off is kept in hundredths of a percent (12.5% -> 1250): integer arithmetic only.
PERCENT_SCALE = 100
FULL_PERCENT = 100 * PERCENT_SCALE
MAX_DURATION_MONTHS = 120
CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{3,50}$")


class Duration(StrEnum):
    """How long a coupon's discount lasts on a subscription."""

    ONCE = "once"
    REPEATING = "repeating"
    FOREVER = "forever"


def percent_to_hundredths(percent: Decimal) -> int:
    """12.5 -> 1250. A percent off is 0 < p <= 100 with at most 2 decimals."""
    if not percent.is_finite():
        raise ValueError(f"percent_off must be a number, got {percent}")
    scaled = percent * PERCENT_SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"percent_off has at most 2 decimals, got {percent}")
    hundredths = int(scaled)
    if not 0 < hundredths <= FULL_PERCENT:
        raise ValueError(f"percent_off must be above 0 and at most 100, got {percent}")
    return hundredths


def hundredths_to_percent(hundredths: int) -> Decimal:
    """1250 -> Decimal("12.5"), as the API shows it (no trailing zeros)."""
    value = Decimal(hundredths) / PERCENT_SCALE
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


class CouponTerms(BaseModel):
    """What a subscription's discount needs of its coupon (a snapshot taken at redemption:
    later changes to the coupon, or its deletion, do not alter an applied discount)."""

    model_config = ConfigDict(frozen=True)

    coupon_id: Annotated[str, Field(min_length=1)]
    name: str
    percent_off_hundredths: Annotated[int, Field(gt=0, le=FULL_PERCENT, strict=True)] | None = None
    amount_off: Annotated[int, Field(gt=0, strict=True)] | None = None
    currency: str | None = None
    duration: Duration
    duration_in_months: Annotated[int, Field(ge=1, le=MAX_DURATION_MONTHS)] | None = None
    # None: every plan.
    applies_to_plans: list[str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CouponTerms:
        if (self.percent_off_hundredths is None) == (self.amount_off is None):
            raise ValueError("a coupon has exactly one of percent_off and amount_off")
        if (self.amount_off is None) != (self.currency is None):
            raise ValueError("amount_off goes with a currency, percent_off without one")
        if (self.duration == Duration.REPEATING) != (self.duration_in_months is not None):
            raise ValueError("duration_in_months is given for repeating coupons only")
        return self

    @property
    def is_percent(self) -> bool:
        return self.percent_off_hundredths is not None

    def describe(self) -> str:
        """ "Launch (25% off)" or "Launch (5.00 USD off)": the discount line's text."""
        if self.percent_off_hundredths is not None:
            off = f"{hundredths_to_percent(self.percent_off_hundredths)}% off"
        else:
            assert self.amount_off is not None and self.currency is not None
            off = f"{format_amount(self.amount_off, self.currency)} off"
        return f"{self.name} ({off})"


def check_terms(
    *,
    percent_off: Decimal | None,
    amount_off: int | None,
    currency: str | None,
    duration: Duration,
    duration_in_months: int | None,
) -> int | None:
    """The terms a new coupon may have; returns percent off in hundredths (None for an
    amount off). Raises 422 `validation_error` naming the field."""
    if (percent_off is None) == (amount_off is None):
        raise _invalid("percent_off: give exactly one of percent_off and amount_off")
    if amount_off is not None and currency is None:
        raise _invalid("currency: an amount_off coupon needs a currency")
    if percent_off is not None and currency is not None:
        raise _invalid("currency: a percent_off coupon has no currency")
    if duration == Duration.REPEATING and duration_in_months is None:
        raise _invalid("duration_in_months: a repeating coupon needs duration_in_months")
    if duration != Duration.REPEATING and duration_in_months is not None:
        raise _invalid("duration_in_months: only a repeating coupon has duration_in_months")
    if percent_off is None:
        return None
    try:
        return percent_to_hundredths(percent_off)
    except ValueError as err:
        raise _invalid(f"percent_off: {err}") from err


def _invalid(message: str) -> DomainError:
    return errors.VALIDATION_ERROR(message)


def normalize_code(code: str) -> str:
    """The form codes are compared in (case-insensitive); 422 unless 3-50 of [A-Za-z0-9_-]."""
    if not CODE_PATTERN.fullmatch(code):
        raise _invalid("code: 3 to 50 letters, digits, '_' or '-'")
    return code.lower()


class CouponState(BaseModel):
    """A stored coupon's redemption state, as read for one redemption."""

    coupon_id: str
    redeem_by: datetime | None = None
    deleted: bool = False
    max_redemptions: int | None = None
    times_redeemed: int = 0


class CodeState(BaseModel):
    """A stored promotion code's limits, as read for one redemption."""

    code_id: str
    code: str
    active: bool = True
    expires_at: datetime | None = None
    max_redemptions: int | None = None
    times_redeemed: int = 0
    customer_id: str | None = None
    first_time_transaction: bool = False
    minimum_amount: int | None = None


def coupon_valid(coupon: CouponState, now: datetime) -> bool:
    """Whether the coupon may still be redeemed at `now` (the API's `valid`)."""
    try:
        check_coupon(coupon, now)
    except DomainError:
        return False
    return True


def check_coupon(coupon: CouponState, now: datetime) -> None:
    """409 `coupon_expired` (deleted, or past `redeem_by`) or `coupon_exhausted`."""
    moment = as_utc(now, "now")
    if coupon.deleted:
        raise errors.COUPON_EXPIRED(f"Coupon {coupon.coupon_id} was deleted")
    if coupon.redeem_by is not None and moment >= as_utc(coupon.redeem_by, "redeem_by"):
        raise errors.COUPON_EXPIRED(
            f"Coupon {coupon.coupon_id} could be redeemed until {coupon.redeem_by.isoformat()}"
        )
    if coupon.max_redemptions is not None and coupon.times_redeemed >= coupon.max_redemptions:
        raise errors.COUPON_EXHAUSTED(
            f"Coupon {coupon.coupon_id} has been redeemed {coupon.max_redemptions} times"
        )


def code_active(code: CodeState, now: datetime) -> bool:
    """Whether the code may still be redeemed at `now` by an eligible customer."""
    try:
        check_code_active(code, now)
    except DomainError:
        return False
    return True


def check_code_active(code: CodeState, now: datetime) -> None:
    """409 `promotion_code_inactive`: deactivated, expired or exhausted."""
    moment = as_utc(now, "now")
    why = None
    if not code.active:
        why = "was deactivated"
    elif code.expires_at is not None and moment >= as_utc(code.expires_at, "expires_at"):
        why = f"expired at {code.expires_at.isoformat()}"
    elif code.max_redemptions is not None and code.times_redeemed >= code.max_redemptions:
        why = f"has been redeemed {code.max_redemptions} times"
    if why is not None:
        raise errors.PROMOTION_CODE_INACTIVE(f"Promotion code {code.code} {why}")


def check_code_eligible(
    code: CodeState, *, customer_id: str, has_paid_before: bool, recurring_total: int
) -> None:
    """422 `promotion_code_not_eligible`: another customer's code, a first-transaction code
    for a customer who has paid before, or a subscription under `minimum_amount` (its total
    per period before discounts)."""
    why = None
    if code.customer_id is not None and code.customer_id != customer_id:
        why = "belongs to another customer"
    elif code.first_time_transaction and has_paid_before:
        why = "is for a customer's first purchase only"
    elif code.minimum_amount is not None and recurring_total < code.minimum_amount:
        why = f"needs a subscription of at least {code.minimum_amount} per period"
    if why is not None:
        raise errors.PROMOTION_CODE_NOT_ELIGIBLE(f"Promotion code {code.code} {why}")


def check_applicable(coupon: CouponTerms, *, currency: str, plan_ids: list[str]) -> None:
    """422 `coupon_not_applicable`: an amount off in another currency, or no item of a plan
    the coupon applies to."""
    if coupon.currency is not None and coupon.currency != currency.lower():
        raise errors.COUPON_NOT_APPLICABLE(
            f"Coupon {coupon.coupon_id} is in {coupon.currency}, the subscription in "
            f"{currency.lower()}"
        )
    plans = coupon.applies_to_plans
    if plans is not None and not set(plans) & set(plan_ids):
        raise errors.COUPON_NOT_APPLICABLE(
            f"Coupon {coupon.coupon_id} applies to none of the subscription's plans"
        )
