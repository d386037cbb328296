"""Money helpers and DomainError."""

import math
import pickle
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import DomainError
from domain.money import (
    div_round_half_up,
    format_amount,
    minor_unit_exponent,
    normalize_currency,
)

SETTINGS = settings(max_examples=200, deadline=None)


def test_domain_error_attributes_and_str() -> None:
    err = DomainError("same_plan", "Already on plan")
    assert (err.code, err.message, err.http_status) == ("same_plan", "Already on plan", 409)
    assert str(err) == "Already on plan"
    assert DomainError("invalid_currency", "bad", 422).http_status == 422


def test_domain_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(DomainError("too_many_changes", "slow down", 429)))
    assert (err.code, err.message, err.http_status) == ("too_many_changes", "slow down", 429)


@pytest.mark.parametrize(("raw", "expected"), [("USD", "usd"), ("jpy", "jpy"), ("KwD", "kwd")])
def test_normalize_currency_lowercases(raw: str, expected: str) -> None:
    assert normalize_currency(raw) == expected


@pytest.mark.parametrize("raw", ["", "us", "usdd", "u$d", "12a", "\u00fcsd", " usd"])
def test_normalize_currency_rejects_non_codes(raw: str) -> None:
    with pytest.raises(DomainError) as info:
        normalize_currency(raw)
    assert info.value.code == "invalid_currency"
    assert info.value.http_status == 422


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("usd", 2),
        ("EUR", 2),
        ("jpy", 0),
        ("KRW", 0),
        ("vnd", 0),
        ("xof", 0),
        ("kwd", 3),
        ("BHD", 3),
        ("tnd", 3),
    ],
)
def test_minor_unit_exponent(currency: str, exponent: int) -> None:
    assert minor_unit_exponent(currency) == exponent


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (5, 2, 3),
        (-5, 2, -3),
        (7, 2, 4),
        (-7, 2, -4),
        (1, 3, 0),
        (2, 3, 1),
        (-1, 3, 0),
        (-2, 3, -1),
        (0, 7, 0),
        (10, 5, 2),
        (-10, 5, -2),
        (1, 1, 1),
    ],
)
def test_div_round_half_up_worked(numerator: int, denominator: int, expected: int) -> None:
    assert div_round_half_up(numerator, denominator) == expected


@pytest.mark.parametrize("denominator", [0, -1, -10])
def test_div_round_half_up_requires_positive_denominator(denominator: int) -> None:
    with pytest.raises(ValueError):
        div_round_half_up(1, denominator)


def _reference_round(numerator: int, denominator: int) -> int:
    exact = Fraction(numerator, denominator)
    magnitude = math.floor(abs(exact) + Fraction(1, 2))
    return magnitude if exact >= 0 else -magnitude


@SETTINGS
@given(st.integers(-(10**30), 10**30), st.integers(1, 10**15))
def test_div_round_half_up_matches_fraction_rounding(numerator: int, denominator: int) -> None:
    assert div_round_half_up(numerator, denominator) == _reference_round(numerator, denominator)


@SETTINGS
@given(st.integers(-(10**12), 10**12), st.integers(1, 10**6))
def test_div_round_half_up_ties_go_away_from_zero(quotient: int, half: int) -> None:
    # numerator / denominator == quotient + 1/2 exactly (or - 1/2 when negative).
    denominator = 2 * half
    sign = -1 if quotient < 0 else 1
    numerator = quotient * denominator + sign * half
    assert div_round_half_up(numerator, denominator) == quotient + sign


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1050, "usd", "10.50 USD"),
        (500, "jpy", "500 JPY"),
        (-250, "usd", "-2.50 USD"),
        (0, "usd", "0.00 USD"),
        (5, "eur", "0.05 EUR"),
        (-5, "usd", "-0.05 USD"),
        (-500, "JPY", "-500 JPY"),
        (1234, "kwd", "1.234 KWD"),
        (5, "bhd", "0.005 BHD"),
        (123456789, "usd", "1234567.89 USD"),
    ],
)
def test_format_amount(amount: int, currency: str, expected: str) -> None:
    assert format_amount(amount, currency) == expected


def test_format_amount_rejects_bad_currency() -> None:
    with pytest.raises(DomainError):
        format_amount(100, "dollars")


@SETTINGS
@given(st.integers(-(10**15), 10**15), st.sampled_from(["usd", "jpy", "kwd"]))
def test_format_amount_round_trips(amount: int, currency: str) -> None:
    text, code = format_amount(amount, currency).split(" ")
    assert code == currency.upper()
    exponent = minor_unit_exponent(currency)
    assert Fraction(text) * 10**exponent == amount
