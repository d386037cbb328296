"""Time-based proration."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from domain.proration import Proration, prorate

SETTINGS = settings(max_examples=200, deadline=None)
DAY = 86_400


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def test_ten_to_twenty_dollars_exactly_halfway() -> None:
    result = prorate(1000, 2000, utc(2024, 4, 1), utc(2024, 5, 1), utc(2024, 4, 16))
    assert result == Proration(
        credit=-500, debit=1000, remaining_seconds=15 * DAY, period_seconds=30 * DAY
    )
    assert result.credit + result.debit == 500


def test_jpy_third_of_period_remaining() -> None:
    # 1000 JPY -> 3000 JPY with one day of three left; yen have no minor unit.
    result = prorate(1000, 3000, utc(2024, 1, 1), utc(2024, 1, 4), utc(2024, 1, 3))
    assert (result.credit, result.debit, result.credit + result.debit) == (-333, 1000, 667)


def test_three_decimal_currency() -> None:
    # 10.000 KWD -> 25.000 KWD with 10 of 31 days left: 100000/31 = 3225.8, 250000/31 = 8064.5+.
    result = prorate(10_000, 25_000, utc(2024, 1, 1), utc(2024, 2, 1), utc(2024, 1, 22))
    assert (result.credit, result.debit) == (-3226, 8065)


def test_rounding_ties_go_away_from_zero() -> None:
    # Half of 1 and half of 3 minor units: exact ties 0.5 and 1.5.
    result = prorate(1, 3, utc(2024, 1, 1), utc(2024, 1, 1, 0, 0, 2), utc(2024, 1, 1, 0, 0, 1))
    assert (result.credit, result.debit) == (-1, 2)


def test_downgrade_gives_net_credit() -> None:
    result = prorate(2000, 1000, utc(2024, 4, 1), utc(2024, 5, 1), utc(2024, 4, 16))
    assert (result.credit, result.debit, result.credit + result.debit) == (-1000, 500, -500)


def test_sub_second_remainder_is_truncated() -> None:
    start = utc(2024, 1, 1)
    result = prorate(
        1000, 1000, start, start + timedelta(seconds=10), start + timedelta(0, 2, 750_000)
    )
    assert (result.remaining_seconds, result.period_seconds) == (7, 10)
    assert (result.credit, result.debit) == (-700, 700)


def test_at_must_lie_within_period() -> None:
    start, end = utc(2024, 1, 1), utc(2024, 2, 1)
    with pytest.raises(ValueError):
        prorate(100, 200, start, end, start - timedelta(microseconds=1))
    with pytest.raises(ValueError):
        prorate(100, 200, start, end, end + timedelta(microseconds=1))


def test_invalid_inputs() -> None:
    start = utc(2024, 1, 1)
    with pytest.raises(ValueError):
        prorate(100, 200, datetime(2024, 1, 1), utc(2024, 2, 1), start)
    with pytest.raises(ValueError):
        prorate(100, 200, start, start, start)
    with pytest.raises(ValueError):
        prorate(-1, 200, start, utc(2024, 2, 1), start)
    with pytest.raises(ValueError):
        prorate(100, -1, start, utc(2024, 2, 1), start)


amounts = st.integers(0, 10**9)
starts = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
lengths = st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3 * 366))


@st.composite
def period_and_instant(draw: st.DrawFn) -> tuple[datetime, datetime, datetime]:
    start = draw(starts)
    end = start + draw(lengths)
    at = start + draw(st.timedeltas(min_value=timedelta(0), max_value=end - start))
    return start, end, at


@SETTINGS
@given(amounts, amounts, period_and_instant())
def test_amounts_never_exceed_plan_prices(
    old: int, new: int, window: tuple[datetime, datetime, datetime]
) -> None:
    result = prorate(old, new, *window)
    assert -old <= result.credit <= 0
    assert 0 <= result.debit <= new
    assert 0 <= result.remaining_seconds <= result.period_seconds


@SETTINGS
@given(amounts, amounts, starts, lengths)
def test_change_at_period_start_is_full_swap(
    old: int, new: int, start: datetime, length: timedelta
) -> None:
    result = prorate(old, new, start, start + length, start)
    assert (result.credit, result.debit) == (-old, new)


@SETTINGS
@given(amounts, amounts, starts, lengths)
def test_change_at_period_end_is_free(
    old: int, new: int, start: datetime, length: timedelta
) -> None:
    result = prorate(old, new, start, start + length, start + length)
    assert (result.credit, result.debit, result.remaining_seconds) == (0, 0, 0)


@SETTINGS
@given(amounts, amounts, period_and_instant(), st.data())
def test_credit_and_debit_monotone_in_remaining_time(
    old: int, new: int, window: tuple[datetime, datetime, datetime], data: st.DataObject
) -> None:
    start, end, early = window
    late = early + data.draw(st.timedeltas(min_value=timedelta(0), max_value=end - early))
    assume(start <= late <= end)
    before, after = prorate(old, new, start, end, early), prorate(old, new, start, end, late)
    assert before.remaining_seconds >= after.remaining_seconds
    # More time left means a larger credit (more negative) and a larger debit.
    assert before.credit <= after.credit
    assert before.debit >= after.debit
