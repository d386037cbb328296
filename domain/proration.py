"""Time-based proration of a price change within the current period."""

from dataclasses import dataclass
from datetime import datetime

from domain._time import as_utc, whole_seconds
from domain.money import div_round_half_up


@dataclass(frozen=True)
class Proration:
    """Credit for unused time on the old price and debit for the rest on the new price."""

    credit: int
    debit: int
    remaining_seconds: int
    period_seconds: int


def prorate(
    old_amount: int,
    new_amount: int,
    period_start: datetime,
    period_end: datetime,
    at: datetime,
) -> Proration:
    """Prorate a switch from `old_amount` to `new_amount` at `at`, to the whole second."""
    if old_amount < 0 or new_amount < 0:
        raise ValueError("plan amounts must be non-negative")
    start = as_utc(period_start, "period_start")
    end = as_utc(period_end, "period_end")
    moment = as_utc(at, "at")
    if not start <= moment <= end:
        raise ValueError(f"at={moment.isoformat()} is outside the period [{start}, {end}]")
    period_seconds = whole_seconds(end - start)
    if period_seconds <= 0:
        raise ValueError("period must last at least one second")
    # Truncation is monotone, so remaining_seconds <= period_seconds always holds.
    remaining_seconds = whole_seconds(end - moment)
    return Proration(
        credit=-div_round_half_up(old_amount * remaining_seconds, period_seconds),
        debit=div_round_half_up(new_amount * remaining_seconds, period_seconds),
        remaining_seconds=remaining_seconds,
        period_seconds=period_seconds,
    )
