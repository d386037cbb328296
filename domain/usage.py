"""Usage: meters, the aggregation of usage events, metered prices and usage limits.

Quantities are exact. A meter's value property holds a non-negative integer or decimal
(a JSON integer, a JSON number with at most `MAX_SCALE` decimals, or a string of digits
such as "12.5"); it is read as a `Decimal` and never as a float, so a sum of 0.1 ten times
is exactly 1. Aggregates are therefore decimals; the price rounds once, per period: a
period's quantity is billed as `ceil(quantity / package_size)` started packages times the
plan's `amount`, an integer in minor units. A limit compares the exact quantity with an
integer limit.

The aggregation is incremental (`Running.add`): what the database keeps per subscription,
meter and period is the `Running` state, updated as events arrive, so neither the bill nor
the limit check reads raw events. `unique_count` also needs the set of values seen, which
the database keeps in a table of its own; here the caller says whether a value is new.
Each aggregation is independent of the order of arrival; duplicates (the same
`transaction_id` sent again) are dropped before aggregation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from domain import errors
from domain.errors import DomainError
from domain.periods import Interval, period_containing

# A value has at most this many decimals and stays below MAX_VALUE: what NUMERIC in the
# database and a JSON number both keep exactly.
MAX_SCALE = 12
MAX_VALUE = Decimal(10) ** 15
MAX_UNIQUE_VALUE_LENGTH = 200
# How far ahead of "now" (the test clock's now on a test clock) an event may be stamped.
MAX_FUTURE = timedelta(minutes=5)


class Aggregation(StrEnum):
    SUM = "sum"
    COUNT = "count"
    MAX = "max"
    LAST = "last"
    UNIQUE_COUNT = "unique_count"


VALUE_AGGREGATIONS = frozenset({Aggregation.SUM, Aggregation.MAX, Aggregation.LAST})


@dataclass(frozen=True)
class MeterSpec:
    """What a meter counts: events named `event_name`, aggregated over one property. (The
    API checks a new meter's properties first; here a mismatch is a bug.)"""

    event_name: str
    aggregation: Aggregation
    value_property: str | None = None
    unique_property: str | None = None

    def __post_init__(self) -> None:
        needs_value = self.aggregation in VALUE_AGGREGATIONS
        if needs_value != (self.value_property is not None):
            raise ValueError(
                f"value_property is {'required' if needs_value else 'not allowed'} "
                f"for aggregation {self.aggregation.value}"
            )
        needs_unique = self.aggregation == Aggregation.UNIQUE_COUNT
        if needs_unique != (self.unique_property is not None):
            raise ValueError(
                f"unique_property is {'required' if needs_unique else 'not allowed'} "
                f"for aggregation {self.aggregation.value}"
            )


def invalid(message: str) -> DomainError:
    return errors.INVALID_PROPERTY(message)


def parse_quantity(raw: Any, name: str) -> Decimal:
    """A property value as an exact non-negative decimal, or `invalid_property`."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise invalid(f"properties.{name} must be a number")
    try:
        # A float goes through its shortest repr: the decimal the client wrote (0.1 -> "0.1").
        value = Decimal(raw) if isinstance(raw, int) else Decimal(str(raw).strip())
    except InvalidOperation:
        raise invalid(f"properties.{name} must be a number") from None
    if not value.is_finite():
        raise invalid(f"properties.{name} must be a finite number")
    if value < 0:
        raise invalid(f"properties.{name} must not be negative")
    if value >= MAX_VALUE:
        raise invalid(f"properties.{name} must be below {MAX_VALUE:f}")
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_SCALE:
        raise invalid(f"properties.{name} has more than {MAX_SCALE} decimals")
    return normal if normal else Decimal(0)


def parse_unique(raw: Any, name: str) -> str:
    """A unique_count property value as text: a string, or an integer (1 and "1" are one)."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise invalid(f"properties.{name} must be a string or an integer")
    text = str(raw)
    if not 1 <= len(text) <= MAX_UNIQUE_VALUE_LENGTH:
        raise invalid(f"properties.{name} must have 1 to {MAX_UNIQUE_VALUE_LENGTH} characters")
    return text


@dataclass(frozen=True)
class Reading:
    """What one event contributes to one meter: a quantity, or a value to count once."""

    quantity: Decimal
    unique: str | None = None


def read(meter: MeterSpec, properties: Mapping[str, Any]) -> Reading:
    """The event's contribution to `meter`, or `invalid_property`."""
    if meter.aggregation == Aggregation.COUNT:
        return Reading(Decimal(1))
    if meter.aggregation == Aggregation.UNIQUE_COUNT:
        assert meter.unique_property is not None
        if meter.unique_property not in properties:
            raise invalid(f"properties.{meter.unique_property} is required")
        return Reading(
            Decimal(1), parse_unique(properties[meter.unique_property], meter.unique_property)
        )
    assert meter.value_property is not None
    if meter.value_property not in properties:
        raise invalid(f"properties.{meter.value_property} is required")
    return Reading(parse_quantity(properties[meter.value_property], meter.value_property))


@dataclass(frozen=True)
class Running:
    """A meter's aggregate over the events seen so far in one period. For `last`, the
    latest event wins, by (timestamp, transaction id) so that ties do not depend on order."""

    quantity: Decimal = Decimal(0)
    events: int = 0
    last_at: datetime | None = None
    last_transaction: str | None = None

    def add(
        self,
        aggregation: Aggregation,
        reading: Reading,
        at: datetime,
        transaction_id: str,
        new_unique: bool = True,
    ) -> Running:
        """This state with one more (not duplicate) event. For `unique_count`, `new_unique`
        says whether the event's value was not seen in the period before."""
        seen = replace(self, events=self.events + 1)
        match aggregation:
            case Aggregation.SUM:
                return replace(seen, quantity=self.quantity + reading.quantity)
            case Aggregation.COUNT:
                return replace(seen, quantity=self.quantity + 1)
            case Aggregation.MAX:
                top = reading.quantity if self.events == 0 else max(self.quantity, reading.quantity)
                return replace(seen, quantity=top)
            case Aggregation.UNIQUE_COUNT:
                return replace(seen, quantity=self.quantity + (1 if new_unique else 0))
            case Aggregation.LAST:
                key = (at, transaction_id)
                if self.last_at is None or key > (self.last_at, self.last_transaction or ""):
                    return replace(
                        seen, quantity=reading.quantity, last_at=at, last_transaction=transaction_id
                    )
                return seen
        raise AssertionError(f"unknown aggregation {aggregation!r}")


@dataclass(frozen=True)
class UsageEvent:
    transaction_id: str
    timestamp: datetime
    properties: Mapping[str, Any]


def aggregate(meter: MeterSpec, events: Iterable[UsageEvent]) -> Decimal:
    """The meter's quantity over `events`, in order of arrival: a transaction id seen
    before is a duplicate (the first arrival counts, as in the database)."""
    state, seen, values = Running(), set[str](), set[str]()
    for event in events:
        if event.transaction_id in seen:
            continue
        seen.add(event.transaction_id)
        reading = read(meter, event.properties)
        new_unique = reading.unique is not None and reading.unique not in values
        if reading.unique is not None:
            values.add(reading.unique)
        state = state.add(
            meter.aggregation, reading, event.timestamp, event.transaction_id, new_unique
        )
    return state.quantity


def packages(quantity: Decimal, package_size: int) -> int:
    """Started packages: ceil(quantity / package_size), exactly (no decimal context)."""
    if package_size < 1:
        raise ValueError(f"package_size must be >= 1, got {package_size}")
    if quantity < 0:
        raise ValueError(f"quantity must not be negative, got {quantity}")
    numerator, denominator = quantity.as_integer_ratio()
    return -(-numerator // (denominator * package_size))


def usage_amount(quantity: Decimal, package_size: int, amount: int) -> int:
    """What a metered plan bills for a period's quantity, in minor units."""
    return packages(quantity, package_size) * amount


def as_number(quantity: Decimal) -> int | float:
    """A quantity for JSON: an integer when whole, else the nearest float (quantities have
    at most `MAX_SCALE` decimals; a JSON number is what clients expect)."""
    whole = int(quantity)
    return whole if whole == quantity else float(quantity)


def number_text(quantity: Decimal) -> str:
    """A quantity as JSON number text, exact."""
    return f"{quantity.normalize():f}" if quantity else "0"


@dataclass(frozen=True)
class LimitStatus:
    limit: int
    used: Decimal
    remaining: Decimal
    reached: bool


def evaluate_limit(limit: int, used: Decimal) -> LimitStatus:
    """A usage limit in the current period: reached once used >= limit."""
    return LimitStatus(limit, used, max(Decimal(limit) - used, Decimal(0)), used >= limit)


def crossed(limit: int, before: Decimal, after: Decimal) -> bool:
    """Whether an update from `before` to `after` reached the limit (once per period:
    only the update that moves the quantity from below to at-or-above it)."""
    return before < limit <= after


def timestamp_problem(at: datetime, now: datetime) -> DomainError | None:
    """An event stamped more than `MAX_FUTURE` after now is refused."""
    if at - now > MAX_FUTURE:
        return errors.TIMESTAMP_IN_FUTURE(
            f"timestamp {at.isoformat()} is more than 5 minutes after now ({now.isoformat()})"
        )
    return None


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    def __contains__(self, at: object) -> bool:
        return isinstance(at, datetime) and self.start <= at < self.end


def period_of(
    at: datetime,
    current: Period,
    open_periods: Iterable[Period],
    anchor: datetime | None,
    interval: Interval,
    interval_count: int,
    closed_periods: Iterable[Period] = (),
) -> Period | None:
    """The usage period an event stamped `at` belongs to, or None when that period is
    closed (already invoiced).

    `open_periods` and `closed_periods` are the periods the meter already has an aggregate
    for: earlier ones still open (their invoice waits for late events), and those of the
    current billing period, open or closed (a plan change or a cancel bills the usage up to
    it and closes that stretch). An event in one of them belongs to it. Otherwise: the
    current billing period from the end of its last closed stretch (so usage after a plan
    change starts a stretch of its own), or, for an event stamped after the current period
    ends (the renewal is not yet recorded), the period after it."""
    closed = list(closed_periods)
    for period in closed:
        if at in period:
            return None
    for period in open_periods:
        if at in period:
            return period
    if at in current:
        ends = [p.end for p in closed if current.start < p.end <= at]
        return Period(max(ends, default=current.start), current.end)
    if at >= current.end:
        start, end = period_containing(anchor or current.start, interval, interval_count, at)
        return Period(max(start, current.end), end)
    return None
