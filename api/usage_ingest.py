"""Ingesting usage events: judge each event (`domain.usage_batch`), store the accepted ones
through a `UsageSink`, and fire `subscription.usage_limit_reached` when an aggregate
reaches a feature's limit (once per subscription, feature and period: the event id is
derived from the three, and the timeline skips an id it has)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import structlog
from psycopg import errors as pg_errors
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from api.ids import new_id
from db.repositories import stripe_inbox
from db.repositories.usage import GroupKey, Written
from db.usage_sink import UsageSink
from domain.usage import as_number
from domain.usage_batch import BatchPlan, CustomerMetering, EventIn, Rejection, plan_batch

log = structlog.get_logger()

LIMIT_EVENT = "subscription.usage_limit_reached"
# Limit events this process has written (a set, so that an aggregate far past its limit
# does not write the same event again on every batch); bounded by clearing.
_FIRED_MAX = 100_000


@dataclass
class Outcome:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    event_ids: dict[int, str] = field(default_factory=dict)  # index -> id, accepted events


def limit_event_id(subscription_id: str, feature: str, period_start: datetime) -> str:
    digest = hashlib.sha256(
        f"{subscription_id}|{feature}|{period_start.astimezone(UTC).isoformat()}".encode()
    ).hexdigest()
    return f"evt_{digest[:24]}"


# Two writes that touch the same aggregates in a different order can deadlock; PostgreSQL
# aborts one, which is sent again (it changed nothing).
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


@dataclass(frozen=True)
class Single:
    """What became of one event sent alone: stored (`event_id`), a duplicate, or refused."""

    event_id: str | None = None
    duplicate: bool = False
    rejection: Rejection | None = None


# At most this many single events share one write.
_GROUP_MAX = 500


class Ingestion:
    def __init__(self, sink: UsageSink, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sink = sink
        self._sessions = sessions
        self._fired: set[str] = set()
        self._waiting: list[tuple[EventIn, asyncio.Future[Single]]] = []
        self._writing = False
        self._writer: asyncio.Task[None] | None = None  # held: the loop keeps only weak refs

    async def ingest_one(self, event: EventIn) -> Single:
        """One event, written together with the single events that arrive while a write is
        under way (a group commit: an idle process writes at once, a busy one writes what
        queued meanwhile in one statement, so concurrent single events cost about what a
        batch does). Each event is still judged alone."""
        future: asyncio.Future[Single] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, future))
        if not self._writing:
            self._writing = True
            self._writer = asyncio.get_running_loop().create_task(self._write_waiting())
        return await future

    async def _write_waiting(self) -> None:
        try:
            while self._waiting:
                group = self._waiting[:_GROUP_MAX]
                del self._waiting[:_GROUP_MAX]
                try:
                    outcome = await self.ingest(
                        [(i, event) for i, (event, _) in enumerate(group)], datetime.now(UTC)
                    )
                except Exception as err:  # every request of the group answers it
                    for _, future in group:
                        if not future.done():
                            future.set_exception(err)
                    continue
                refused = {r.index: r for r in outcome.rejected}
                for i, (_, future) in enumerate(group):
                    if future.done():  # its request went away
                        continue
                    if i in refused:
                        future.set_result(Single(rejection=refused[i]))
                    elif i in outcome.event_ids:
                        future.set_result(Single(event_id=outcome.event_ids[i]))
                    else:
                        future.set_result(Single(duplicate=True))
        finally:
            self._writing = False

    async def ingest(self, events: Sequence[tuple[int, EventIn]], now: datetime) -> Outcome:
        customers = sorted({event.customer_id for _, event in events})
        metering = await self._sink.metering(customers)
        plan = plan_batch(events, metering, now, lambda: new_id("uev"))
        outcome = Outcome(rejected=list(plan.rejected), duplicates=plan.duplicates_in_batch)
        if not plan.drafts:
            return outcome
        written = await self._record(plan, now)
        closed = self._closed(plan, written)
        if closed:
            await self._sink.forget(sorted(closed))
        for draft in plan.drafts:
            if draft.id in closed:
                outcome.rejected.append(
                    Rejection(draft.index, "period_closed", "The event's period was just invoiced")
                )
            elif draft.id in written.inserted:
                outcome.accepted += 1
                outcome.event_ids[draft.index] = draft.id
            else:
                outcome.duplicates += 1
        outcome.rejected.sort(key=lambda r: r.index)
        clocks = {c: m.clock_time for c, m in metering.items() if m.clock_time is not None}
        await self._limits(plan, written, metering_limits(metering), clocks, now)
        return outcome

    async def _record(self, plan: BatchPlan, now: datetime) -> Written:
        for attempt in (1, 2, 3):
            try:
                return await self._sink.record(plan.drafts, plan.contributions, now)
            except _RETRYABLE:
                if attempt == 3:
                    raise
                log.warning("usage.batch_retried", attempt=attempt, events=len(plan.drafts))
        raise AssertionError("unreachable")

    @staticmethod
    def _closed(plan: BatchPlan, written: Written) -> set[str]:
        """Inserted events with a contribution whose aggregate was closed meanwhile."""
        return {
            c.event_id
            for c in plan.contributions
            if c.event_id in written.inserted
            and (c.subscription_id, c.meter_id, c.period_start) not in written.quantities
        }

    async def _limits(
        self,
        plan: BatchPlan,
        written: Written,
        limits: dict[tuple[str, str], dict[str, int]],
        clocks: dict[str, datetime],
        now: datetime,
    ) -> None:
        reached: list[tuple[str, str, GroupKey, int, Decimal]] = []
        customers = {c.subscription_id: c.customer_id for c in plan.contributions}
        ends = {
            (c.subscription_id, c.meter_id, c.period_start): c.period_end
            for c in plan.contributions
        }
        for key, quantity in written.quantities.items():
            for feature, limit in limits.get((key[0], key[1]), {}).items():
                event_id = limit_event_id(key[0], feature, key[2])
                if quantity >= limit and event_id not in self._fired:
                    reached.append((event_id, feature, key, limit, quantity))
        if not reached:
            return
        async with self._sessions() as session, session.begin():
            for event_id, feature, (sub, meter, start), limit, quantity in reached:
                await stripe_inbox.write_event(
                    session,
                    event_id=event_id,
                    subscription_id=sub,
                    customer_id=customers[sub],
                    event_type=LIMIT_EVENT,
                    data={
                        "feature": feature,
                        "meter_id": meter,
                        "limit": limit,
                        "used": as_number(quantity),
                        "period_start": start.astimezone(UTC).isoformat(),
                        "period_end": ends[(sub, meter, start)].astimezone(UTC).isoformat(),
                    },
                    now=clocks.get(customers[sub], now),
                )
        if len(self._fired) > _FIRED_MAX:
            self._fired.clear()
        self._fired.update(event_id for event_id, *_ in reached)
        log.info("usage.limits_reached", events=len(reached))


def metering_limits(
    metering: Mapping[str, CustomerMetering],
) -> dict[tuple[str, str], dict[str, int]]:
    """(subscription, meter) -> {feature: limit}, from what the sink looked up."""
    found: dict[tuple[str, str], dict[str, int]] = {}
    for customer in metering.values():
        for sub in customer.subscriptions:
            for use in sub.meters:
                if use.limits:
                    found[(sub.subscription_id, use.meter_id)] = dict(use.limits)
    return found
