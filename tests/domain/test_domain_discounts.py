"""Discount arithmetic: which invoices, how much, and proration under a percent discount.

Expected amounts are worked out by hand in the comments (integer cents, halves up)."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.coupons import CouponTerms, Duration, percent_to_hundredths
from domain.discounts import (
    Discount,
    apply_discount,
    discount_amount,
    discount_line,
    discounted_total,
    eligible_subtotal,
    ended,
    is_active,
    start_discount,
)
from domain.invoices import InvoiceLine, LineKind

SETTINGS = settings(max_examples=300, deadline=None)


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def percent(p: str, duration: Duration = Duration.FOREVER, **kw: object) -> CouponTerms:
    return CouponTerms(
        coupon_id="coupon_p",
        name="Launch",
        percent_off_hundredths=percent_to_hundredths(Decimal(p)),
        duration=duration,
        **kw,  # type: ignore[arg-type]
    )


def amount(off: int, duration: Duration = Duration.FOREVER, **kw: object) -> CouponTerms:
    return CouponTerms(
        coupon_id="coupon_a",
        name="Five off",
        amount_off=off,
        currency="usd",
        duration=duration,
        **kw,  # type: ignore[arg-type]
    )


def line(amount: int, plan_id: str | None = "plan_a", kind: str = "subscription") -> InvoiceLine:
    return InvoiceLine(
        kind=LineKind(kind),
        description="x",
        amount=amount,
        period_start=utc(2025, 1, 1),
        period_end=utc(2025, 2, 1),
        plan_id=plan_id,
    )


# --- amounts -------------------------------------------------------------------------------


def test_percent_rounds_half_up_on_the_invoice_total() -> None:
    # 25% of 1002 = 250.5 -> 251; 33.33% of 1000 = 333.3 -> 333; 12.5% of 1004 = 125.5 -> 126.
    assert discount_amount(percent("25"), 1002) == -251
    assert discount_amount(percent("33.33"), 1000) == -333
    assert discount_amount(percent("12.5"), 1004) == -126


def test_percent_is_taken_on_the_sum_not_per_line() -> None:
    # Two 1001 lines at 25%: per line 250.25 -> 250 each = 500, on the sum 500.5 -> 501.
    lines = [line(1001, "plan_a"), line(1001, "plan_b")]
    found = discount_line(start_discount(percent("25"), utc(2025, 1, 1)), lines, utc(2025, 1, 1))
    assert found is not None and found.amount == -501
    assert found.kind == LineKind.DISCOUNT
    assert found.description == "Launch (25% off)"


def test_hundred_percent_takes_everything() -> None:
    assert discount_amount(percent("100"), 4999) == -4999


def test_amount_off_is_capped_at_the_eligible_subtotal() -> None:
    assert discount_amount(amount(500), 1000) == -500
    assert discount_amount(amount(1500), 1000) == -1000


def test_nothing_eligible_means_no_discount() -> None:
    assert discount_amount(amount(500), 0) == 0
    assert discount_amount(percent("50"), -300) == 0


def test_eligible_lines_are_subscription_and_usage_of_the_coupon_plans() -> None:
    lines = [
        line(1000, "plan_a"),
        line(3000, "plan_b"),
        line(250, "plan_a", "usage"),
        line(-400, "plan_a", "proration"),
        line(-100, None, "credit"),
    ]
    assert eligible_subtotal(lines, None) == 4250
    assert eligible_subtotal(lines, ["plan_a"]) == 1250
    assert eligible_subtotal(lines, ["plan_c"]) == 0


def test_a_coupon_on_one_plan_of_a_two_item_invoice() -> None:
    # 20% of plan_b's 3 x 1500 = 4500 -> 900; plan_a's 1000 is untouched.
    lines = [line(1000, "plan_a"), line(4500, "plan_b")]
    discount = start_discount(percent("20", applies_to_plans=["plan_b"]), utc(2025, 1, 1))
    found = discount_line(discount, lines, utc(2025, 1, 1))
    assert found is not None and found.amount == -900


def test_proration_only_invoice_gets_no_discount_line() -> None:
    lines = [line(-500, "plan_a", "proration"), line(1500, "plan_b", "proration")]
    discount = start_discount(percent("50"), utc(2025, 1, 1))
    assert discount_line(discount, lines, utc(2025, 1, 15)) is None


# --- which invoices ------------------------------------------------------------------------


def test_repeating_covers_invoices_created_before_start_plus_n_months() -> None:
    # Redeemed Jan 31: three calendar months end Apr 30 (clamped), not May 1.
    discount = start_discount(
        percent("25", Duration.REPEATING, duration_in_months=3), utc(2025, 1, 31)
    )
    assert discount.end == utc(2025, 4, 30)
    assert is_active(discount, utc(2025, 1, 31))
    assert is_active(discount, utc(2025, 4, 29, 23))
    assert not is_active(discount, utc(2025, 4, 30))
    assert not ended(discount, utc(2025, 4, 29))
    assert ended(discount, utc(2025, 4, 30))


def test_repeating_monthly_invoices_three_of_them() -> None:
    # Monthly renewals on the 1st from Jan 1, 3 months: Jan, Feb, Mar discounted, Apr not.
    discount = start_discount(
        percent("25", Duration.REPEATING, duration_in_months=3), utc(2025, 1, 1)
    )
    got = [
        discount_line(discount, [line(1000)], utc(2025, month, 1)) is not None
        for month in (1, 2, 3, 4)
    ]
    assert got == [True, True, True, False]


def test_forever_never_ends_and_once_ends_when_used() -> None:
    forever = start_discount(amount(500), utc(2025, 1, 1))
    assert forever.end is None and is_active(forever, utc(2125, 1, 1))
    once = start_discount(percent("50", Duration.ONCE), utc(2025, 1, 1))
    assert once.end is None
    lines, after = apply_discount(once, [line(1000)], "in_1", utc(2025, 1, 1))
    assert [x.amount for x in lines] == [1000, -500]
    assert after is not None and after.used_on == "in_1" and ended(after, utc(2025, 1, 1))
    again, _ = apply_discount(after, [line(1000)], "in_2", utc(2026, 1, 1))
    assert [x.amount for x in again] == [1000]


def test_once_skips_invoices_without_subscription_lines() -> None:
    # A proration-only invoice first: once stays unused for the next renewal.
    once = start_discount(percent("50", Duration.ONCE), utc(2025, 1, 1))
    lines, after = apply_discount(once, [line(700, kind="proration")], "in_p", utc(2025, 1, 10))
    assert [x.amount for x in lines] == [700]
    assert after == once
    lines, after = apply_discount(after, [line(1000)], "in_r", utc(2025, 2, 1))
    assert [x.amount for x in lines] == [1000, -500]


def test_nothing_before_start() -> None:
    discount = start_discount(amount(500), utc(2025, 3, 1))
    assert discount_line(discount, [line(1000)], utc(2025, 2, 28)) is None


# --- proration under a percent discount ----------------------------------------------------


def test_discounted_totals_for_proration() -> None:
    # 25% on 1000 -> 750; 33.33% on 1000 -> 1000 - 333 = 667.
    discount = start_discount(percent("25"), utc(2025, 1, 1))
    assert discounted_total(discount, "plan_a", 1000, utc(2025, 1, 15)) == 750
    assert (
        discounted_total(
            start_discount(percent("33.33"), utc(2025, 1, 1)), "p", 1000, utc(2025, 1, 2)
        )
        == 667
    )
    # Not for an amount off, a plan the coupon skips, an ended or absent discount.
    assert (
        discounted_total(start_discount(amount(300), utc(2025, 1, 1)), "p", 1000, utc(2025, 1, 2))
        == 1000
    )
    only_b = start_discount(percent("25", applies_to_plans=["plan_b"]), utc(2025, 1, 1))
    assert discounted_total(only_b, "plan_a", 1000, utc(2025, 1, 2)) == 1000
    short = start_discount(percent("25", Duration.REPEATING, duration_in_months=1), utc(2025, 1, 1))
    assert discounted_total(short, "plan_a", 1000, utc(2025, 2, 1)) == 1000
    assert discounted_total(None, "plan_a", 1000, utc(2025, 2, 1)) == 1000


# --- coupon terms --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hundredths"), [("12.5", 1250), ("0.01", 1), ("100", 10_000), ("33.33", 3333)]
)
def test_percent_in_hundredths(text: str, hundredths: int) -> None:
    assert percent_to_hundredths(Decimal(text)) == hundredths


@pytest.mark.parametrize("text", ["0", "-5", "100.01", "12.345", "NaN"])
def test_bad_percents(text: str) -> None:
    with pytest.raises(ValueError):
        percent_to_hundredths(Decimal(text))


def test_terms_must_be_consistent() -> None:
    with pytest.raises(ValueError):
        CouponTerms(coupon_id="c", name="n", duration=Duration.ONCE)  # neither
    with pytest.raises(ValueError):
        CouponTerms(coupon_id="c", name="n", amount_off=5, duration=Duration.ONCE)  # no currency
    with pytest.raises(ValueError):
        CouponTerms(
            coupon_id="c", name="n", percent_off_hundredths=5, duration=Duration.REPEATING
        )  # no months


# --- properties ----------------------------------------------------------------------------

amounts = st.integers(min_value=0, max_value=10**11)
hundredths = st.integers(min_value=1, max_value=10_000)
line_amounts = st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=20)


def coupons() -> st.SearchStrategy[CouponTerms]:
    pct = hundredths.map(
        lambda h: CouponTerms(
            coupon_id="c", name="n", percent_off_hundredths=h, duration=Duration.FOREVER
        )
    )
    off = st.integers(min_value=1, max_value=10**11).map(
        lambda a: CouponTerms(
            coupon_id="c", name="n", amount_off=a, currency="usd", duration=Duration.FOREVER
        )
    )
    return st.one_of(pct, off)


@SETTINGS
@given(coupons(), amounts)
def test_discount_never_exceeds_the_eligible_subtotal(coupon: CouponTerms, eligible: int) -> None:
    off = discount_amount(coupon, eligible)
    assert -eligible <= off <= 0


@SETTINGS
@given(hundredths, amounts)
def test_percent_is_rounded_half_up_once_per_invoice(h: int, eligible: int) -> None:
    coupon = CouponTerms(coupon_id="c", name="n", percent_off_hundredths=h, duration=Duration.ONCE)
    exact = Decimal(eligible) * Decimal(h) / Decimal(10_000)
    off = -discount_amount(coupon, eligible)
    # Within half a minor unit of the exact value, and a tie goes up.
    assert abs(Decimal(off) - exact) <= Decimal("0.5")
    if exact - int(exact) == Decimal("0.5"):
        assert off == int(exact) + 1


@SETTINGS
@given(coupons(), line_amounts, st.lists(st.integers(min_value=-(10**9), max_value=0), max_size=5))
def test_totals_are_never_negative(
    coupon: CouponTerms, charges: list[int], credits: list[int]
) -> None:
    # Subscription lines minus the discount never go below zero; credits (prorations,
    # which the balance settles) are outside the discount's reach.
    lines = [line(a) for a in charges] + [line(c, kind="proration") for c in credits]
    discount = Discount(coupon=coupon, start=utc(2025, 1, 1))
    out, _ = apply_discount(discount, lines, "in_x", utc(2025, 1, 1))
    charged = sum(x.amount for x in out if x.kind in {"subscription", "discount"})
    assert charged >= 0
    assert sum(1 for x in out if x.kind == "discount") <= 1


@SETTINGS
@given(hundredths, st.integers(min_value=0, max_value=10**9))
def test_discounted_total_is_between_zero_and_the_total(h: int, total: int) -> None:
    coupon = CouponTerms(
        coupon_id="c", name="n", percent_off_hundredths=h, duration=Duration.FOREVER
    )
    price = discounted_total(
        Discount(coupon=coupon, start=utc(2025, 1, 1)), "p", total, utc(2025, 6, 1)
    )
    assert 0 <= price <= total
