"""Billing period boundaries and containment."""

import time
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.periods import (
    Interval,
    add_months_clamped,
    interval_months,
    next_boundary_after,
    period_containing,
)

SETTINGS = settings(max_examples=200, deadline=None)
US = timedelta(microseconds=1)


def period_boundary(
    anchor: datetime, interval: Interval, interval_count: int, index: int
) -> datetime:
    """The `index`-th boundary as `period_containing` computes it: always from the anchor,
    never from the previous boundary, so a clamped month end (Jan 31 -> Feb 29) springs
    back afterwards (-> Mar 31)."""
    return add_months_clamped(anchor, index * interval_months(interval, interval_count))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


@pytest.mark.parametrize(
    ("interval", "count", "months"),
    [
        (Interval.MONTH, 1, 1),
        (Interval.MONTH, 3, 3),
        (Interval.YEAR, 1, 12),
        (Interval.YEAR, 2, 24),
    ],
)
def test_interval_months(interval: Interval, count: int, months: int) -> None:
    assert interval_months(interval, count) == months


@pytest.mark.parametrize("count", [0, -1])
def test_interval_count_must_be_positive(count: int) -> None:
    with pytest.raises(ValueError):
        interval_months(Interval.MONTH, count)
    with pytest.raises(ValueError):
        period_boundary(utc(2024, 1, 1), Interval.MONTH, count, 1)
    with pytest.raises(ValueError):
        period_containing(utc(2024, 1, 1), Interval.YEAR, count, utc(2024, 5, 1))


def test_add_months_clamped_keeps_time_and_clamps_day() -> None:
    anchor = utc(2024, 1, 31, 13, 45, 7, 123)
    assert add_months_clamped(anchor, 1) == utc(2024, 2, 29, 13, 45, 7, 123)
    assert add_months_clamped(utc(2023, 1, 31), 1) == utc(2023, 2, 28)
    assert add_months_clamped(utc(2024, 3, 31), -1) == utc(2024, 2, 29)
    assert add_months_clamped(utc(2024, 12, 15), 1) == utc(2025, 1, 15)
    assert add_months_clamped(utc(2024, 1, 15), -1) == utc(2023, 12, 15)
    assert add_months_clamped(anchor, 0) == anchor


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2024, 1, 1)
    with pytest.raises(ValueError):
        add_months_clamped(naive, 1)
    with pytest.raises(ValueError):
        period_containing(naive, Interval.MONTH, 1, utc(2024, 1, 1))
    with pytest.raises(ValueError):
        period_containing(utc(2024, 1, 1), Interval.MONTH, 1, naive)


def test_non_utc_input_is_converted_to_utc() -> None:
    eastern = timezone(timedelta(hours=-5))
    # 22:00 on Jan 31 at UTC-5 is 03:00 on Feb 1 UTC, so the anchor day is the 1st.
    result = add_months_clamped(datetime(2024, 1, 31, 22, tzinfo=eastern), 1)
    assert result == utc(2024, 3, 1, 3)
    assert result.utcoffset() == timedelta(0)


def test_jan_31_monthly_chain_in_leap_year_springs_back() -> None:
    anchor = utc(2024, 1, 31, 9, 30)
    chain = [period_boundary(anchor, Interval.MONTH, 1, i) for i in range(5)]
    assert chain == [
        utc(2024, 1, 31, 9, 30),
        utc(2024, 2, 29, 9, 30),
        utc(2024, 3, 31, 9, 30),
        utc(2024, 4, 30, 9, 30),
        utc(2024, 5, 31, 9, 30),
    ]


def test_jan_31_monthly_chain_in_non_leap_year() -> None:
    anchor = utc(2023, 1, 31)
    chain = [period_boundary(anchor, Interval.MONTH, 1, i) for i in range(1, 4)]
    assert chain == [utc(2023, 2, 28), utc(2023, 3, 31), utc(2023, 4, 30)]


def test_negative_indices_count_back_from_anchor() -> None:
    anchor = utc(2024, 1, 31)
    assert period_boundary(anchor, Interval.MONTH, 1, -1) == utc(2023, 12, 31)
    assert period_boundary(anchor, Interval.MONTH, 1, -2) == utc(2023, 11, 30)
    assert period_boundary(anchor, Interval.MONTH, 1, -11) == utc(2023, 2, 28)


def test_feb_29_yearly_anchor() -> None:
    anchor = utc(2024, 2, 29, 12)
    years = [period_boundary(anchor, Interval.YEAR, 1, i) for i in range(-4, 5)]
    assert years == [
        utc(2020, 2, 29, 12),
        utc(2021, 2, 28, 12),
        utc(2022, 2, 28, 12),
        utc(2023, 2, 28, 12),
        utc(2024, 2, 29, 12),
        utc(2025, 2, 28, 12),
        utc(2026, 2, 28, 12),
        utc(2027, 2, 28, 12),
        utc(2028, 2, 29, 12),
    ]
    assert period_containing(anchor, Interval.YEAR, 1, utc(2025, 2, 28, 11)) == (
        utc(2024, 2, 29, 12),
        utc(2025, 2, 28, 12),
    )


def test_quarterly_interval_count_three() -> None:
    anchor = utc(2023, 11, 30)
    boundaries = [period_boundary(anchor, Interval.MONTH, 3, i) for i in range(4)]
    assert boundaries == [utc(2023, 11, 30), utc(2024, 2, 29), utc(2024, 5, 30), utc(2024, 8, 30)]
    assert period_containing(anchor, Interval.MONTH, 3, utc(2024, 6, 15)) == (
        utc(2024, 5, 30),
        utc(2024, 8, 30),
    )
    # A moment in the boundary's month but before its day belongs to the prior period.
    assert period_containing(anchor, Interval.MONTH, 3, utc(2024, 5, 29)) == (
        utc(2024, 2, 29),
        utc(2024, 5, 30),
    )


def test_period_containing_before_the_anchor() -> None:
    anchor = utc(2024, 3, 15, 8)
    assert period_containing(anchor, Interval.MONTH, 1, utc(2024, 1, 20)) == (
        utc(2024, 1, 15, 8),
        utc(2024, 2, 15, 8),
    )
    assert period_containing(anchor, Interval.MONTH, 1, utc(2024, 1, 15, 7, 59)) == (
        utc(2023, 12, 15, 8),
        utc(2024, 1, 15, 8),
    )
    assert period_containing(anchor, Interval.YEAR, 1, utc(2020, 7, 1)) == (
        utc(2020, 3, 15, 8),
        utc(2021, 3, 15, 8),
    )


def test_period_containing_at_boundaries() -> None:
    anchor = utc(2024, 1, 31)
    assert period_containing(anchor, Interval.MONTH, 1, anchor) == (anchor, utc(2024, 2, 29))
    feb = utc(2024, 2, 29)
    assert period_containing(anchor, Interval.MONTH, 1, feb) == (feb, utc(2024, 3, 31))
    assert period_containing(anchor, Interval.MONTH, 1, feb - US) == (anchor, feb)


def test_next_boundary_after_is_strict() -> None:
    anchor = utc(2024, 1, 31)
    assert next_boundary_after(anchor, Interval.MONTH, 1, anchor) == utc(2024, 2, 29)
    assert next_boundary_after(anchor, Interval.MONTH, 1, anchor - US) == anchor
    assert next_boundary_after(anchor, Interval.MONTH, 1, utc(2024, 3, 1)) == utc(2024, 3, 31)


def test_period_containing_far_from_anchor_is_fast() -> None:
    anchor = utc(1970, 1, 31)
    started = time.perf_counter()
    for _ in range(1000):
        start, end = period_containing(anchor, Interval.MONTH, 1, utc(9000, 6, 29, 23))
    assert time.perf_counter() - started < 1.0
    assert (start, end) == (utc(9000, 5, 31), utc(9000, 6, 30))
    start, end = period_containing(utc(9000, 1, 31), Interval.MONTH, 1, utc(1970, 3, 5))
    assert (start, end) == (utc(1970, 2, 28), utc(1970, 3, 31))


instants = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 12, 31), timezones=st.just(UTC)
)
intervals = st.sampled_from([Interval.MONTH, Interval.YEAR])
counts = st.integers(1, 6)


@SETTINGS
@given(instants, intervals, counts, instants)
def test_period_containing_contains_and_tiles(
    anchor: datetime, interval: Interval, count: int, at: datetime
) -> None:
    start, end = period_containing(anchor, interval, count, at)
    assert start <= at < end
    # No gap or overlap with the neighbouring periods.
    assert period_containing(anchor, interval, count, end)[0] == end
    assert period_containing(anchor, interval, count, start - US)[1] == start
    assert period_containing(anchor, interval, count, end - US) == (start, end)
    assert next_boundary_after(anchor, interval, count, at) == end


@SETTINGS
@given(instants, intervals, counts, st.integers(-300, 300))
def test_consecutive_boundaries_tile(
    anchor: datetime, interval: Interval, count: int, index: int
) -> None:
    start = period_boundary(anchor, interval, count, index)
    end = period_boundary(anchor, interval, count, index + 1)
    assert start < end
    assert period_containing(anchor, interval, count, start) == (start, end)
    assert period_containing(anchor, interval, count, end - US) == (start, end)


small_instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2012, 12, 31), timezones=st.just(UTC)
)


@SETTINGS
@given(small_instants, intervals, counts, small_instants)
def test_period_containing_matches_brute_force(
    anchor: datetime, interval: Interval, count: int, at: datetime
) -> None:
    span = 13 * 12 // interval_months(interval, count) + 2
    boundaries = [period_boundary(anchor, interval, count, k) for k in range(-span, span + 1)]
    expected = next((a, b) for a, b in pairwise(boundaries) if a <= at < b)
    assert period_containing(anchor, interval, count, at) == expected
