"""Coupon and promotion-code rules: terms, redeemability, eligibility, applicability."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.coupons import (
    CodeState,
    CouponState,
    CouponTerms,
    Duration,
    check_applicable,
    check_code_active,
    check_code_eligible,
    check_coupon,
    check_terms,
    coupon_valid,
    hundredths_to_percent,
    normalize_code,
)
from domain.errors import DomainError

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def code_of(err: pytest.ExceptionInfo[DomainError]) -> tuple[str, int]:
    return err.value.code, err.value.http_status


def test_terms_give_percent_in_hundredths() -> None:
    terms = dict(amount_off=None, currency=None, duration=Duration.ONCE, duration_in_months=None)
    assert check_terms(percent_off=Decimal("12.5"), **terms) == 1250  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        dict(percent_off=None, amount_off=None, currency=None),
        dict(percent_off=Decimal(10), amount_off=100, currency="usd"),
        dict(percent_off=None, amount_off=100, currency=None),
        dict(percent_off=Decimal(10), amount_off=None, currency="usd"),
        dict(percent_off=Decimal("10.001"), amount_off=None, currency=None),
        dict(percent_off=Decimal(101), amount_off=None, currency=None),
        dict(percent_off=Decimal(10), amount_off=None, currency=None, duration_in_months=3),
        dict(
            percent_off=Decimal(10),
            amount_off=None,
            currency=None,
            duration=Duration.REPEATING,
        ),
    ],
)
def test_bad_terms_are_422(bad: dict[str, object]) -> None:
    args: dict[str, object] = {"duration": Duration.ONCE, "duration_in_months": None, **bad}
    with pytest.raises(DomainError) as err:
        check_terms(**args)  # type: ignore[arg-type]
    assert code_of(err) == ("validation_error", 422)


def test_percent_shown_without_trailing_zeros() -> None:
    assert str(hundredths_to_percent(2500)) == "25"
    assert str(hundredths_to_percent(1250)) == "12.5"
    assert str(hundredths_to_percent(3333)) == "33.33"


def test_codes_compare_case_insensitively() -> None:
    assert normalize_code("Launch-2025_x") == "launch-2025_x"
    for bad in ("ab", "a" * 51, "has space", "ümlaut"):
        with pytest.raises(DomainError):
            normalize_code(bad)


def test_coupon_expired_deleted_exhausted() -> None:
    check_coupon(CouponState(coupon_id="c", max_redemptions=2, times_redeemed=1), NOW)
    with pytest.raises(DomainError) as err:
        check_coupon(CouponState(coupon_id="c", redeem_by=NOW), NOW)
    assert code_of(err) == ("coupon_expired", 409)
    with pytest.raises(DomainError) as err:
        check_coupon(CouponState(coupon_id="c", deleted=True), NOW)
    assert code_of(err) == ("coupon_expired", 409)
    with pytest.raises(DomainError) as err:
        check_coupon(CouponState(coupon_id="c", max_redemptions=2, times_redeemed=2), NOW)
    assert code_of(err) == ("coupon_exhausted", 409)
    assert coupon_valid(CouponState(coupon_id="c", redeem_by=datetime(2025, 6, 2, tzinfo=UTC)), NOW)


@pytest.mark.parametrize(
    "state",
    [
        CodeState(code_id="p", code="X", active=False),
        CodeState(code_id="p", code="X", expires_at=NOW),
        CodeState(code_id="p", code="X", max_redemptions=1, times_redeemed=1),
    ],
)
def test_inactive_codes(state: CodeState) -> None:
    with pytest.raises(DomainError) as err:
        check_code_active(state, NOW)
    assert code_of(err) == ("promotion_code_inactive", 409)


def test_code_eligibility() -> None:
    code = CodeState(
        code_id="p", code="X", customer_id="cus_a", first_time_transaction=True, minimum_amount=1000
    )
    check_code_eligible(code, customer_id="cus_a", has_paid_before=False, recurring_total=1000)
    for customer, paid, total in (
        ("cus_b", False, 1000),
        ("cus_a", True, 1000),
        ("cus_a", False, 999),
    ):
        with pytest.raises(DomainError) as err:
            check_code_eligible(
                code, customer_id=customer, has_paid_before=paid, recurring_total=total
            )
        assert code_of(err) == ("promotion_code_not_eligible", 422)


def test_applicability() -> None:
    usd = CouponTerms(
        coupon_id="c", name="n", amount_off=500, currency="usd", duration=Duration.FOREVER
    )
    check_applicable(usd, currency="USD", plan_ids=["plan_a"])
    with pytest.raises(DomainError) as err:
        check_applicable(usd, currency="eur", plan_ids=["plan_a"])
    assert code_of(err) == ("coupon_not_applicable", 422)
    only_b = CouponTerms(
        coupon_id="c",
        name="n",
        percent_off_hundredths=100,
        duration=Duration.ONCE,
        applies_to_plans=["plan_b"],
    )
    check_applicable(only_b, currency="eur", plan_ids=["plan_a", "plan_b"])
    with pytest.raises(DomainError) as err:
        check_applicable(only_b, currency="eur", plan_ids=["plan_a"])
    assert code_of(err) == ("coupon_not_applicable", 422)
