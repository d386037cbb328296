"""A subscription's discount: which invoices get it and how much it takes off.

- Which invoices: `forever` every invoice from `start`; `repeating` every invoice created
  before `start` + `duration_in_months` calendar months; `once` only the first invoice with
  subscription lines created at or after `start`. An invoice with nothing eligible (a
  proration-only invoice) gets no discount line.
- How much: one `discount` line (negative) per invoice, on the eligible subtotal: the
  invoice's `subscription` and `usage` lines of the coupon's plans (every plan when it names
  none). Percent: `-round_half_up(eligible * p / 100)` over the invoice as a whole; amount
  off: `-min(amount_off, eligible)`. Never more than the eligible subtotal, so an invoice's
  subscription lines minus its discount is never negative.
- Proration while a percent discount is active prices each eligible item at its discounted
  total; the balance is applied after the discount (the caller does it, last).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from domain._time import as_utc
from domain.contracts import DiscountView
from domain.coupons import FULL_PERCENT, CouponTerms, Duration
from domain.invoices import InvoiceLine, LineKind
from domain.money import div_round_half_up
from domain.periods import add_months_clamped

# Line kinds a discount applies to.
ELIGIBLE_KINDS = frozenset({LineKind.SUBSCRIPTION, LineKind.USAGE})


class Discount(BaseModel):
    """The one discount a subscription holds: its coupon's terms as redeemed, from `start`
    until `end` (repeating only; None: until removed, or for `once` until used)."""

    model_config = ConfigDict(frozen=True)

    coupon: CouponTerms
    promotion_code_id: str | None = None
    start: datetime
    end: datetime | None = None
    # The redemption that counted it (settles a reservation its request left behind).
    redemption_id: str | None = None
    # `once`: the invoice it was applied to (it applies to no other).
    used_on: str | None = None

    def view(self) -> DiscountView:
        return DiscountView(
            coupon_id=self.coupon.coupon_id,
            promotion_code_id=self.promotion_code_id,
            start=self.start,
            end=self.end,
        )

    def event_data(self) -> dict[str, object]:
        """What the discount's timeline events say about it."""
        return {
            "coupon_id": self.coupon.coupon_id,
            "promotion_code_id": self.promotion_code_id,
            "start": self.start.isoformat(),
            "end": self.end.isoformat() if self.end else None,
            "redemption_id": self.redemption_id,
        }


class DiscountGrant(BaseModel):
    """A redeemed coupon on its way to a subscription, which starts it at its own time."""

    model_config = ConfigDict(frozen=True)

    coupon: CouponTerms
    promotion_code_id: str | None = None
    redemption_id: str | None = None


def start_discount(
    coupon: CouponTerms,
    at: datetime,
    promotion_code_id: str | None = None,
    redemption_id: str | None = None,
) -> Discount:
    """The discount a redemption at `at` gives: a repeating one ends its duration in calendar
    months later (a start on the 31st ends on the last day of a shorter month)."""
    start = as_utc(at, "at")
    end = None
    if coupon.duration == Duration.REPEATING:
        assert coupon.duration_in_months is not None  # CouponTerms guarantees it
        end = add_months_clamped(start, coupon.duration_in_months)
    return Discount(
        coupon=coupon,
        promotion_code_id=promotion_code_id,
        start=start,
        end=end,
        redemption_id=redemption_id,
    )


def grant_discount(grant: DiscountGrant, at: datetime) -> Discount:
    return start_discount(grant.coupon, at, grant.promotion_code_id, grant.redemption_id)


def is_active(discount: Discount, at: datetime) -> bool:
    """Whether the discount still applies at `at`: begun, not past its end, and (`once`)
    not yet used."""
    moment = as_utc(at, "at")
    if moment < discount.start:
        return False
    if discount.end is not None and moment >= discount.end:
        return False
    return not (discount.coupon.duration == Duration.ONCE and discount.used_on is not None)


def eligible_subtotal(lines: Iterable[InvoiceLine], applies_to_plans: Sequence[str] | None) -> int:
    """The sum of the `subscription` and `usage` lines of the given plans (all when None).
    A line without a plan counts only for a coupon on every plan."""
    plans = None if applies_to_plans is None else frozenset(applies_to_plans)
    return sum(
        line.amount
        for line in lines
        if line.kind in ELIGIBLE_KINDS and (plans is None or line.plan_id in plans)
    )


def discount_amount(coupon: CouponTerms, eligible: int) -> int:
    """What the coupon takes off an invoice whose eligible subtotal is `eligible`: zero or
    negative, never more than `eligible` (a negative subtotal gets nothing off)."""
    if eligible <= 0:
        return 0
    if coupon.percent_off_hundredths is not None:
        return -div_round_half_up(eligible * coupon.percent_off_hundredths, FULL_PERCENT)
    assert coupon.amount_off is not None  # CouponTerms has exactly one of the two
    return -min(coupon.amount_off, eligible)


def discount_line(
    discount: Discount, lines: Sequence[InvoiceLine], created_at: datetime
) -> InvoiceLine | None:
    """The discount line of an invoice created at `created_at` with `lines`, or None when
    the discount does not apply to it (not active, or nothing eligible, or zero off)."""
    if not is_active(discount, created_at):
        return None
    amount = discount_amount(
        discount.coupon, eligible_subtotal(lines, discount.coupon.applies_to_plans)
    )
    if amount == 0:
        return None
    starts = [line.period_start for line in lines if line.kind in ELIGIBLE_KINDS]
    ends = [line.period_end for line in lines if line.kind in ELIGIBLE_KINDS]
    return InvoiceLine(
        kind=LineKind.DISCOUNT,
        description=discount.coupon.describe(),
        amount=amount,
        period_start=min(starts),
        period_end=max(ends),
    )


def apply_discount(
    discount: Discount | None, lines: Sequence[InvoiceLine], invoice_id: str, created_at: datetime
) -> tuple[list[InvoiceLine], Discount | None]:
    """The invoice's lines with its discount line (if it gets one) appended, and the
    discount as it is afterwards: a `once` discount records the invoice it was used on."""
    if discount is None:
        return list(lines), None
    line = discount_line(discount, lines, created_at)
    if line is None:
        return list(lines), discount
    if discount.coupon.duration == Duration.ONCE:
        discount = discount.model_copy(update={"used_on": invoice_id})
    return [*lines, line], discount


def ended(discount: Discount, at: datetime) -> bool:
    """Whether the discount has run its course at `at` (a used `once`, a repeating one at
    or past its end): the subscription no longer holds it."""
    if discount.coupon.duration == Duration.ONCE:
        return discount.used_on is not None
    return discount.end is not None and as_utc(at, "at") >= discount.end


def discounted_total(discount: Discount | None, plan_id: str, total: int, at: datetime) -> int:
    """An item's total per period as proration prices it at `at`: reduced by a percent
    discount that is active and covers the plan (rounded half-up, as on invoices)."""
    if discount is None or not is_active(discount, at):
        return total
    coupon = discount.coupon
    if coupon.percent_off_hundredths is None:
        return total
    if coupon.applies_to_plans is not None and plan_id not in coupon.applies_to_plans:
        return total
    return total + discount_amount(coupon, total)
