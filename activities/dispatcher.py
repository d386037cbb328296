"""The outbox dispatcher: sends the webhooks and emails that the projection queued.

`sync_subscription` writes each new event's deliveries (one row per endpoint that wants it,
and one for the customer's email) into `notification_outbox` in the transaction that
writes the event, so an event is never written without its deliveries, nor a delivery
queued for an event that was rolled back. This loop, in every worker process, claims the
head of each lane (one subscription's deliveries to one target) for a lease, delivers it
(`Deliveries`), and deletes the row, which makes the lane's next row its head: each target
gets a subscription's events one at a time, in timeline order, and a slow or dead endpoint
holds up only its own lanes, never the subscription's workflow or another target.

A failed attempt keeps its row at the head of its lane until its backoff has passed
(`DeliveryRetry`), up to `max_attempts`; then the delivery is recorded as failed and the
lane moves on. A worker that dies mid-delivery leaves a claim that expires after the
lease, and the next claim tries again (at least once: receivers deduplicate by event id;
emails and deliveries already recorded as done are not repeated). Several worker
processes share the outbox: a row is claimed by one of them at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.notifications import Deliveries
from config import Settings
from db.engine import transaction
from db.repositories import outbox
from db.repositories.outbox import Claimed
from domain.notifications import DeliveryRetry, NotificationOutcome

log = structlog.get_logger()


class OutboxDispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        deliveries: Deliveries,
        retry: DeliveryRetry,
        *,
        concurrency: int = 32,
        poll_seconds: float = 1.0,
        lease: timedelta = timedelta(minutes=5),
    ) -> None:
        self._engine = engine
        self._deliveries = deliveries
        self._retry = retry
        self._concurrency = concurrency
        self._poll_seconds = poll_seconds
        # Longer than any one attempt can take (webhook and SMTP timeouts, database waits).
        self._lease = lease
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0  # attempts finished (any outcome), for tests and benchmarks

    @classmethod
    def from_settings(
        cls, engine: AsyncEngine, deliveries: Deliveries, settings: Settings
    ) -> OutboxDispatcher:
        retry = DeliveryRetry(
            initial_ms=settings.webhook_retry_initial_ms,
            max_ms=settings.webhook_retry_max_ms,
            max_attempts=settings.webhook_max_attempts,
        )
        return cls(
            engine,
            deliveries,
            retry,
            concurrency=settings.outbox_concurrency,
            poll_seconds=settings.outbox_poll_seconds,
            lease=timedelta(seconds=settings.outbox_lease_seconds),
        )

    def wake(self) -> None:
        """Something was queued (or a lane moved on): look for due deliveries now."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="outbox-dispatcher")

    async def stop(self, timeout: float = 30.0) -> None:
        """Claim nothing more; let deliveries in flight finish (up to `timeout`)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight:
            _, late = await asyncio.wait(self._inflight, timeout=timeout)
            for task in late:
                task.cancel()  # its claim expires; another worker sends it
        await self._deliveries.aclose()

    async def run(self) -> None:
        while not self._stopping:
            # Cleared before looking, so a wake-up during the claim is not lost.
            self._wake.clear()
            free = self._concurrency - len(self._inflight)
            claimed: list[Claimed] = []
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except Exception:
                    log.exception("outbox.claim_failed")
            for row in claimed:
                task = asyncio.create_task(self._deliver(row))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if free > 0 and len(claimed) == free:
                continue  # there may be more due right now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free and the lane's next row may be its head

    async def _claim(self, limit: int) -> list[Claimed]:
        now = datetime.now(UTC)
        async with transaction(self._engine) as session:
            return await outbox.claim(session, limit=limit, now=now, until=now + self._lease)

    async def _deliver(self, row: Claimed) -> None:
        last = row.attempt >= self._retry.max_attempts
        try:
            outcome = await self._deliveries.deliver(
                row.target, row.event_id, attempt=row.attempt, max_attempts=self._retry.max_attempts
            )
        except Exception as exc:
            # Not a receiver's answer (that is an outcome): our own database or a bug. The
            # attempt counts, so a fault that never clears cannot keep a lane forever.
            log.exception("outbox.delivery_error", target=row.target, event_id=row.event_id)
            outcome = NotificationOutcome(
                status="failed" if last else "retrying", error=type(exc).__name__
            )
        retrying = outcome.status == "retrying"
        delay = self._retry.delay_after(row.attempt)
        try:
            async with transaction(self._engine) as session:
                if retrying:
                    await outbox.retry_at(session, row.id, datetime.now(UTC) + delay)
                else:
                    await outbox.finish(session, [row.id])
        except Exception:
            log.exception("outbox.update_failed", target=row.target, event_id=row.event_id)
            return  # the claim expires and the row is tried again
        self.delivered += 1
        if retrying:
            asyncio.get_running_loop().call_later(delay.total_seconds(), self.wake)
        elif outcome.status == "failed":
            log.warning(
                "outbox.gave_up",
                target=row.target,
                event_id=row.event_id,
                subscription_id=row.subscription_id,
                attempts=row.attempt,
                error=outcome.error,
            )
