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
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.notifications import Deliveries
from config import Settings
from db.engine import transaction
from db.repositories import outbox
from db.repositories.outbox import Claimed
from domain.notifications import EMAIL_LANE, DeliveryRetry, NotificationOutcome

log = structlog.get_logger()


class OutboxDispatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        deliveries: Deliveries,
        retry: DeliveryRetry,
        *,
        concurrency: int = 32,
        email_batch: int = 16,
        poll_seconds: float = 1.0,
        linger: float = 0.0,
        lease: timedelta = timedelta(minutes=5),
    ) -> None:
        self._engine = engine
        self._deliveries = deliveries
        self._retry = retry
        self._concurrency = concurrency  # deliveries claimed and not yet settled, at most
        self._email_batch = email_batch
        self._poll_seconds = poll_seconds
        # Deliveries are queued in bursts (a renewal storm queues a receipt per renewal,
        # one by one): waiting this long after a wake-up before claiming turns a claim, a
        # read, a relay session and a write per row into one of each for many rows.
        self._linger = linger
        # Longer than any one attempt can take (webhook and SMTP timeouts, database waits).
        self._lease = lease
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._busy = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.attempts = 0  # attempts settled (any outcome), for tests and benchmarks

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
            linger=settings.outbox_linger_ms / 1000,
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
                task.cancel()  # its claims expire; another worker sends them

    async def run(self) -> None:
        while not self._stopping:
            # Cleared before looking, so a wake-up during the claim is not lost.
            self._wake.clear()
            free = self._concurrency - self._busy
            claimed: list[Claimed] = []
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except Exception:
                    log.exception("outbox.claim_failed")
            # Emails go out in batches (one read, one relay connection, one write for all);
            # each webhook is a request of its own, to an endpoint with a speed of its own.
            emails = [row for row in claimed if row.target == EMAIL_LANE]
            for start in range(0, len(emails), self._email_batch):
                batch = emails[start : start + self._email_batch]
                self._spawn(batch, self._emails(batch))
            for row in claimed:
                if row.target != EMAIL_LANE:
                    self._spawn([row], self._webhook(row))
            if free > 0 and len(claimed) == free:
                continue  # there may be more due right now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
            if self._linger > 0 and not self._stopping:
                await asyncio.sleep(self._linger)

    def _spawn(self, rows: Sequence[Claimed], work: Awaitable[list[NotificationOutcome]]) -> None:
        self._busy += len(rows)
        task = asyncio.create_task(self._settle(rows, work))
        self._inflight.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._inflight.discard(task)
            self._busy -= len(rows)
            self._wake.set()  # slots are free, and the lanes' next rows may be their heads

        task.add_done_callback(done)

    async def _claim(self, limit: int) -> list[Claimed]:
        now = datetime.now(UTC)
        async with transaction(self._engine) as session:
            return await outbox.claim(session, limit=limit, now=now, until=now + self._lease)

    async def _emails(self, rows: Sequence[Claimed]) -> list[NotificationOutcome]:
        batch = [(row.event_id, row.attempt) for row in rows]
        sent = await self._deliveries.emails(batch, max_attempts=self._retry.max_attempts)
        return [sent[row.event_id] for row in rows]

    async def _webhook(self, row: Claimed) -> list[NotificationOutcome]:
        outcome = await self._deliveries.webhook(
            row.target, row.event_id, attempt=row.attempt, max_attempts=self._retry.max_attempts
        )
        return [outcome]

    async def _settle(
        self, rows: Sequence[Claimed], work: Awaitable[list[NotificationOutcome]]
    ) -> None:
        """Run the attempts, then delete the rows that are done and reschedule the others."""
        try:
            outcomes = await work
        except Exception as exc:
            # Not a receiver's answer (that is an outcome): our own database or a bug. The
            # attempt counts, so a fault that never clears cannot hold a lane forever.
            log.exception("outbox.delivery_error", targets=sorted({r.target for r in rows}))
            outcomes = [
                NotificationOutcome(
                    status="failed" if row.attempt >= self._retry.max_attempts else "retrying",
                    error=type(exc).__name__,
                )
                for row in rows
            ]
        now = datetime.now(UTC)
        retries = [
            (row, self._retry.delay_after(row.attempt))
            for row, outcome in zip(rows, outcomes, strict=True)
            if outcome.status == "retrying"
        ]
        again = {row.id for row, _ in retries}
        try:
            async with transaction(self._engine) as session:
                await outbox.finish(session, [row.id for row in rows if row.id not in again])
                for row, delay in retries:
                    await outbox.retry_at(session, row.id, now + delay)
        except Exception:
            log.exception("outbox.update_failed", targets=sorted({r.target for r in rows}))
            return  # the claims expire and the rows are tried again
        self.attempts += len(rows)
        loop = asyncio.get_running_loop()
        for _, delay in retries:
            loop.call_later(delay.total_seconds(), self.wake)
        for row, outcome in zip(rows, outcomes, strict=True):
            if outcome.status == "failed":
                log.warning(
                    "outbox.gave_up",
                    target=row.target,
                    event_id=row.event_id,
                    subscription_id=row.subscription_id,
                    attempts=row.attempt,
                    error=outcome.error,
                )
