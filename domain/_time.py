"""Private helpers for timezone-aware UTC datetimes."""

from datetime import UTC, datetime, timedelta


def as_utc(value: datetime, name: str) -> datetime:
    """Return `value` converted to UTC; raise ValueError if it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def whole_seconds(delta: timedelta) -> int:
    """Whole seconds in a non-negative timedelta, truncating microseconds.

    Integer fields only: total_seconds() is a float and could round across a boundary.
    """
    if delta < timedelta(0):
        raise ValueError(f"expected a non-negative duration, got {delta!r}")
    return delta.days * 86_400 + delta.seconds
