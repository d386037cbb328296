"""Billing periods anchored to a date, with month-end clamping."""

from datetime import MAXYEAR, MINYEAR, datetime
from enum import StrEnum

from domain._time import as_utc

_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class Interval(StrEnum):
    """Billing interval unit."""

    MONTH = "month"
    YEAR = "year"


def interval_months(interval: Interval, interval_count: int) -> int:
    """Length of one billing period in months."""
    if interval_count < 1:
        raise ValueError(f"interval_count must be >= 1, got {interval_count}")
    if interval == Interval.YEAR:
        return 12 * interval_count
    if interval == Interval.MONTH:
        return interval_count
    raise ValueError(f"unknown interval: {interval!r}")


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and _is_leap(year):
        return 29
    return _DAYS_IN_MONTH[month - 1]


def add_months_clamped(anchor: datetime, months: int) -> datetime:
    """Shift `anchor` by whole months, clamping its day to the target month's length.

    The result is in UTC with the anchor's time of day.
    """
    base = as_utc(anchor, "anchor")
    year, month_zero = divmod(base.year * 12 + (base.month - 1) + months, 12)
    if not MINYEAR <= year <= MAXYEAR:
        raise ValueError(f"shifting {anchor!r} by {months} months leaves the datetime range")
    month = month_zero + 1
    day = min(base.day, _days_in_month(year, month))
    return base.replace(year=year, month=month, day=day)


def period_containing(
    anchor: datetime, interval: Interval, interval_count: int, at: datetime
) -> tuple[datetime, datetime]:
    """The [start, end) billing period containing `at`, before or after the anchor."""
    step = interval_months(interval, interval_count)
    base = as_utc(anchor, "anchor")
    moment = as_utc(at, "at")
    month_diff = (moment.year - base.year) * 12 + (moment.month - base.month)
    # Boundary k falls in calendar month (anchor month + k * step), and boundaries are
    # strictly increasing. Taking k = floor(month_diff / step) puts boundary k in or
    # before at's month and boundary k + 1 in a later month (so after `at`). Only when
    # boundary k is later within at's own month do we need to step back once.
    index = month_diff // step
    start = add_months_clamped(base, index * step)
    if start > moment:
        index -= 1
        start = add_months_clamped(base, index * step)
    end = add_months_clamped(base, (index + 1) * step)
    return start, end


def next_boundary_after(
    anchor: datetime, interval: Interval, interval_count: int, at: datetime
) -> datetime:
    """The smallest period boundary strictly after `at`."""
    return period_containing(anchor, interval, interval_count, at)[1]
