"""Planning a batch of usage events: which to refuse and why, and what each accepted event
adds to which subscription period of which meter. Pure: the caller looks up who meters
what (`CustomerMetering`) and writes the plan.

Each event is judged alone, so a bad event never fails its neighbours. In order: an unknown
customer (`unknown_customer`), a time more than 5 minutes ahead of the customer's now
(`timestamp_in_future`; now is the test clock's time for a customer whose subscription is
on one), no subscription that meters the event's name (`no_metered_subscription`), a
property a meter needs that is missing or not a valid value (`invalid_property`), a
period already invoiced (`period_closed`). A transaction id repeated within the batch is
a duplicate of its first occurrence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain import errors
from domain.errors import DomainError
from domain.periods import Interval
from domain.usage import Aggregation, MeterSpec, Period, period_of, read, timestamp_problem


@dataclass(frozen=True)
class MeterUse:
    """One meter a subscription meters, with its feature limits (feature -> limit) and the
    periods it has aggregates for (`domain.usage.period_of`)."""

    meter_id: str
    spec: MeterSpec
    limits: Mapping[str, int] = field(default_factory=dict)
    open_periods: Sequence[Period] = ()
    closed_periods: Sequence[Period] = ()


@dataclass(frozen=True)
class MeteringSubscription:
    subscription_id: str
    current: Period
    anchor: datetime | None
    interval: Interval
    interval_count: int
    meters: Sequence[MeterUse]


@dataclass(frozen=True)
class CustomerMetering:
    customer_id: str
    known: bool
    clock_time: datetime | None  # set when a subscription of the customer is on a test clock
    subscriptions: Sequence[MeteringSubscription]


@dataclass(frozen=True)
class EventIn:
    """A validated event as the client sent it (timestamp None: now)."""

    transaction_id: str
    customer_id: str
    event_name: str
    timestamp: datetime | None
    properties: Mapping[str, Any]


@dataclass(slots=True)
class Draft:
    """An event to store."""

    index: int  # its place in the request
    id: str
    customer_id: str
    transaction_id: str
    event_name: str
    timestamp: datetime
    properties: Mapping[str, Any]


@dataclass(slots=True)
class Contribution:
    """What one event adds to one subscription period's aggregate of one meter."""

    event_id: str
    subscription_id: str
    meter_id: str
    period_start: datetime
    period_end: datetime
    customer_id: str
    aggregation: Aggregation
    quantity: Decimal
    unique: str | None
    timestamp: datetime
    transaction_id: str


@dataclass(frozen=True)
class Rejection:
    index: int
    code: str
    message: str


@dataclass
class BatchPlan:
    drafts: list[Draft] = field(default_factory=list)
    contributions: list[Contribution] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    duplicates_in_batch: int = 0


def _reject(index: int, err: DomainError) -> Rejection:
    return Rejection(index, err.code, err.message)


def plan_batch(
    events: Sequence[tuple[int, EventIn]],
    metering: Mapping[str, CustomerMetering],
    real_now: datetime,
    new_id: Callable[[], str],
) -> BatchPlan:
    """Judge each (index, event); `metering` holds every customer the events name."""
    plan = BatchPlan()
    seen: set[tuple[str, str]] = set()
    for index, event in events:
        found = metering.get(event.customer_id)
        if found is None or not found.known:
            unknown = errors.UNKNOWN_CUSTOMER(f"No customer with id {event.customer_id!r}")
            plan.rejected.append(_reject(index, unknown))
            continue
        now = found.clock_time or real_now
        at = event.timestamp or now
        if (problem := timestamp_problem(at, now)) is not None:
            plan.rejected.append(_reject(index, problem))
            continue
        key = (event.customer_id, event.transaction_id)
        if key in seen:
            plan.duplicates_in_batch += 1
            continue
        try:
            draft, contributions = _meter(index, event, found, at, new_id)
        except DomainError as err:
            plan.rejected.append(_reject(index, err))
            continue
        seen.add(key)
        plan.drafts.append(draft)
        plan.contributions.extend(contributions)
    return plan


def _meter(
    index: int,
    event: EventIn,
    metering: CustomerMetering,
    at: datetime,
    new_id: Callable[[], str],
) -> tuple[Draft, list[Contribution]]:
    event_id = new_id()
    uses = [
        (sub, use)
        for sub in metering.subscriptions
        for use in sub.meters
        if use.spec.event_name == event.event_name
    ]
    if not uses:
        raise errors.NO_METERED_SUBSCRIPTION(
            f"No subscription of customer {event.customer_id!r} meters {event.event_name!r}"
        )
    contributions = []
    for sub, use in uses:
        reading = read(use.spec, event.properties)
        period = period_of(
            at,
            sub.current,
            use.open_periods,
            sub.anchor,
            sub.interval,
            sub.interval_count,
            use.closed_periods,
        )
        if period is None:
            raise errors.PERIOD_CLOSED(
                f"The period of {at.isoformat()} of subscription {sub.subscription_id} "
                "is already invoiced"
            )
        contributions.append(
            Contribution(
                event_id=event_id,
                subscription_id=sub.subscription_id,
                meter_id=use.meter_id,
                period_start=period.start,
                period_end=period.end,
                customer_id=event.customer_id,
                aggregation=use.spec.aggregation,
                quantity=reading.quantity,
                unique=reading.unique,
                timestamp=at,
                transaction_id=event.transaction_id,
            )
        )
    draft = Draft(
        index,
        event_id,
        event.customer_id,
        event.transaction_id,
        event.event_name,
        at,
        dict(event.properties),
    )
    return draft, contributions
