"""Where usage events go: the `UsageSink` interface and its PostgreSQL implementation.

The API's ingestion (`api/usage_ingest.py`) asks a sink who meters what for a batch's
customers, then hands it the events to store with what each adds to which period
aggregate. PostgreSQL does both in a handful of statements. Another sink can keep the
same contract with a log and a column store: `record` appends to a topic keyed by customer
(deduplicated downstream by (customer_id, transaction_id)), and the aggregates are a
materialized view over it; see the README, "Usage-based billing".
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from db.driver import ConnectionLost
from db.repositories import usage
from domain.periods import Interval
from domain.usage import Aggregation, MeterSpec, Period
from domain.usage_batch import Contribution, CustomerMetering, Draft, MeteringSubscription, MeterUse

_CACHE_MAX = 100_000
T = TypeVar("T")


class UsageSink(Protocol):
    async def metering(self, customer_ids: list[str]) -> dict[str, CustomerMetering]:
        """Who each customer is (known or not) and what their subscriptions meter."""
        ...

    async def record(
        self, drafts: list[Draft], contributions: list[Contribution], now: datetime
    ) -> usage.Written:
        """Store the events once each and fold the new ones into their aggregates."""
        ...

    async def forget(self, event_ids: list[str]) -> None:
        """Drop stored events that could not count (their period closed meanwhile)."""
        ...


def _subscription(rows: list[dict[str, Any]]) -> MeteringSubscription:
    first = rows[0]
    meters = []
    for row in rows:
        if row["meter_id"] is None:
            continue
        spec = MeterSpec(
            row["event_name"],
            Aggregation(row["aggregation"]),
            row["value_property"],
            row["unique_property"],
        )
        limits = dict(zip(row["limit_features"], row["limit_values"], strict=True))
        periods = [
            (Period(datetime.fromisoformat(s), datetime.fromisoformat(e)), closed)
            for s, e, closed in row["periods"]
        ]
        meters.append(
            MeterUse(
                row["meter_id"],
                spec,
                limits,
                [p for p, closed in periods if not closed],
                [p for p, closed in periods if closed],
            )
        )
    return MeteringSubscription(
        first["subscription_id"],
        Period(first["current_period_start"], first["current_period_end"]),
        first["billing_cycle_anchor"],
        Interval(first["interval"]),
        first["interval_count"],
        meters,
    )


def metering_from_rows(rows: list[dict[str, Any]]) -> dict[str, CustomerMetering]:
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_customer[row["customer_id"]].append(row)
    found = {}
    for customer_id, own in by_customer.items():
        by_sub: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in own:
            if row["subscription_id"] is not None and row["current_period_start"] is not None:
                by_sub[row["subscription_id"]].append(row)
        clocks = [row["clock_time"] for row in own if row["clock_time"] is not None]
        found[customer_id] = CustomerMetering(
            customer_id,
            bool(own[0]["known"]),
            max(clocks) if clocks else None,
            [_subscription(sub_rows) for sub_rows in by_sub.values()],
        )
    return found


def _cacheable(metering: CustomerMetering) -> bool:
    return metering.clock_time is None and any(s.meters for s in metering.subscriptions)


class PostgresUsageSink:
    """Events and aggregates in the API's PostgreSQL, each call one autocommit statement.

    Who meters what is cached per customer for `cache_seconds` (a hot customer's events
    then cost one statement): a renewal seen late is harmless (an event after the cached
    period's end falls in the next period, computed from the anchor), and so is a period
    closed meanwhile (the write skips closed aggregates and the event is refused). What a
    stale entry can do is accept events of a subscription canceled or paused less than
    `cache_seconds` ago into its last open period, or refuse a late event for a period
    opened since, or miss a second metering subscription started since. Only customers
    with a metering subscription are cached (one who just subscribed is not refused for
    the cache's sake), and never one on a test clock: their "now" is the clock's."""

    def __init__(self, engine: AsyncEngine, cache_seconds: float = 2.0) -> None:
        self._engine = engine
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, CustomerMetering]] = {}

    async def metering(self, customer_ids: list[str]) -> dict[str, CustomerMetering]:
        now = time.monotonic()
        found: dict[str, CustomerMetering] = {}
        for customer_id in customer_ids:
            cached = self._cache.get(customer_id)
            if cached is not None and cached[0] > now:
                found[customer_id] = cached[1]
        missing = [c for c in customer_ids if c not in found]
        if missing:
            rows = await self._run(usage.resolve, missing)
            fresh = metering_from_rows(rows)
            if len(self._cache) > _CACHE_MAX:
                self._cache.clear()
            for customer_id, metering in fresh.items():
                found[customer_id] = metering
                if self._ttl > 0 and _cacheable(metering):
                    self._cache[customer_id] = (now + self._ttl, metering)
        return found

    async def record(
        self, drafts: list[Draft], contributions: list[Contribution], now: datetime
    ) -> usage.Written:
        return await self._run(usage.write, drafts, contributions, now)

    async def forget(self, event_ids: list[str]) -> None:
        await self._run(usage.forget, event_ids)

    async def _run(self, statement: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One statement on a pooled connection; a connection that died in the pool (the
        engine does not pre-ping) is replaced and the statement sent once more. Each is
        atomic and safe to repeat: a write that did land answers duplicates the second time."""
        for attempt in (1, 2):
            try:
                async with self._engine.connect() as conn:
                    return await statement(conn, *args)
            except ConnectionLost:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")
