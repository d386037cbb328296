"""The notification outbox against the real PostgreSQL: lanes go out one row at a time, in
order; a claim is exclusive until its lease ends; a repeated projection queues nothing twice;
several dispatchers sharing the outbox deliver each event once, in order; a burst queued
row by row goes out as one batch after the dispatcher's linger.

The claim tests run on a database of their own (`scratch`, created and migrated for them on
the session's PostgreSQL server), so the session's dispatcher never competes for their rows.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import ActivityEnvironment

from activities.dispatcher import OutboxDispatcher
from activities.ledger import LedgerActivities
from activities.notifications import Deliveries
from db.delivery_tables import EmailNotification, NotificationOutbox
from db.engine import get_engine, transaction
from db.repositories import outbox
from db.repositories.outbox import Claimed
from domain.contracts import EventDraft, SubscriptionView, SyncRequest
from domain.notifications import EMAIL_LANE, DeliveryRetry, NotificationOutcome
from tests.activities.queue import queue_deliveries
from tests.conftest import Stack
from tests.helpers import (
    advance,
    eventually,
    make_clock,
    make_customer,
    make_plan,
    ok,
    subscribe,
)
from tests.webhook_receiver import Receiver

T0 = datetime(2030, 1, 1, tzinfo=UTC)
LEASE = timedelta(minutes=5)


async def _queue(engine: AsyncEngine, rows: list[tuple[str, str, str]], at: datetime) -> None:
    async with transaction(engine) as session:
        await queue_deliveries(session, rows, at)


async def _claim(engine: AsyncEngine, now: datetime, limit: int = 100) -> list[outbox.Claimed]:
    async with transaction(engine) as session:
        return await outbox.claim(session, limit=limit, now=now, until=now + LEASE)


async def test_a_lane_goes_out_one_row_at_a_time_in_order(scratch: AsyncEngine) -> None:
    a, b = "sub_a", "sub_b"
    rows = [(a, "we_x", "evt_a1"), (a, "we_x", "evt_a2"), (a, EMAIL_LANE, "evt_a1")]
    await _queue(scratch, [*rows, (b, "we_x", "evt_b1")], T0)
    assert await _claim(scratch, T0 - timedelta(seconds=1)) == [], "not due yet"
    first = await _claim(scratch, T0)
    assert {(c.subscription_id, c.target, c.event_id) for c in first} == {
        (a, "we_x", "evt_a1"),
        (a, EMAIL_LANE, "evt_a1"),
        (b, "we_x", "evt_b1"),
    }, "one head per lane; a's second webhook row waits for its first"
    assert all(c.attempt == 1 for c in first)
    assert await _claim(scratch, T0) == [], "claimed heads are not claimed again"
    async with transaction(scratch) as session:
        await queue_deliveries(session, [(a, "we_x", "evt_a1")], T0)  # queued twice: kept once
        assert await outbox.pending(session, a) == 3

    head = next(c for c in first if c.event_id == "evt_a1" and c.target == "we_x")
    async with transaction(scratch) as session:
        await outbox.finish(session, [head.id])
    nxt = await _claim(scratch, T0)
    assert [(c.subscription_id, c.event_id) for c in nxt] == [(a, "evt_a2")]

    # A failed attempt keeps its row at the head of its lane until its backoff has passed.
    retried = next(c for c in first if c.subscription_id == b)
    async with transaction(scratch) as session:
        await outbox.retry_at(session, retried.id, T0 + timedelta(seconds=30))
    assert await _claim(scratch, T0 + timedelta(seconds=29)) == []
    again = await _claim(scratch, T0 + timedelta(seconds=30))
    assert [(c.event_id, c.attempt) for c in again] == [("evt_b1", 2)]
    async with transaction(scratch) as session:
        await outbox.finish(session, [c.id for c in [*first, *nxt, *again]])
        assert await outbox.pending(session) == 0


async def test_a_claim_is_exclusive_until_its_lease_ends(scratch: AsyncEngine) -> None:
    lanes = [f"sub_{n}" for n in range(40)]
    await _queue(scratch, [(lane, "we_y", f"evt_{lane}") for lane in lanes], T0)
    # Four dispatchers racing for the same heads: each row goes to exactly one of them.
    results = await asyncio.gather(*(_claim(scratch, T0, limit=15) for _ in range(4)))
    won = [c.event_id for claimed in results for c in claimed]
    assert len(won) == len(set(won)), "no row claimed twice"
    assert sorted(won) == sorted(f"evt_{lane}" for lane in lanes), "and none left behind"
    # A dispatcher that died holding claims: after the lease they are claimed again.
    assert await _claim(scratch, T0 + LEASE - timedelta(seconds=1)) == []
    reclaimed = await _claim(scratch, T0 + LEASE + timedelta(seconds=1))
    assert len(reclaimed) == len(lanes) and all(c.attempt == 2 for c in reclaimed)


async def test_a_repeated_projection_queues_and_sends_nothing_twice(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    customer = await make_customer(app_client)
    sub_id = f"sub_outbox_{uuid.uuid4().hex[:10]}"
    now = datetime.now(UTC)
    view = SubscriptionView(
        id=sub_id,
        customer_id=customer["id"],
        plan_id="plan_outbox",
        status="canceled",
        billing_cycle_anchor=now,
        canceled_at=now,
        created_at=now,
        state_version=1,
    )
    event = EventDraft(
        id=f"evt_{uuid.uuid4().hex[:24]}",
        type="subscription.canceled",
        subscription_id=sub_id,
        customer_id=customer["id"],
        occurred_at=now,
        data={"reason": "requested"},
    )
    engine = get_engine(stack.settings.effective_database_url)
    woken: list[int] = []
    ledger = LedgerActivities(engine, lambda: woken.append(1))
    request = SyncRequest(subscription=view, events=[event])
    for _ in range(3):  # a retried activity, a replayed workflow task
        await ActivityEnvironment().run(ledger.sync_subscription, request)
    assert woken == [1], "only the attempt that wrote the event queued a delivery"

    async def sent() -> EmailNotification | None:
        async with transaction(engine) as session:
            record = await session.get(EmailNotification, event.id)
            left = await outbox.pending(session, sub_id)
        return record if record is not None and record.status == "sent" and left == 0 else None

    # The session's dispatcher sends it.
    record = await eventually(sent, what="the cancellation email sent")
    assert record is not None and record.attempts == 1
    maildir = stack.settings.data_dir / "mail"
    copies = [p for p in maildir.glob("*.eml") if f"<{event.id}@recur>" in p.read_text()]
    assert len(copies) == 1


async def test_dispatchers_sharing_the_outbox_deliver_each_event_once_in_order(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    api = app_client
    receiver = await Receiver().start()
    engine = get_engine(stack.settings.effective_database_url)
    # Two more dispatchers besides the session's, as with three worker processes.
    deliveries = Deliveries(engine, stack.settings)
    extra = [
        OutboxDispatcher(
            engine,
            deliveries,
            DeliveryRetry(initial_ms=100, max_ms=500, max_attempts=8),
            concurrency=4,
            poll_seconds=0.05,
        )
        for _ in range(2)
    ]
    endpoint: dict[str, str] | None = None
    try:
        endpoint = ok(
            await api.post("/v1/webhook_endpoints", json={"url": receiver.url, "events": ["*"]}),
            201,
        )
        assert endpoint is not None
        receiver.secret = endpoint["secret"]
        for dispatcher in extra:
            dispatcher.start()
        start = datetime(2027, 9, 1, 8, 0, tzinfo=UTC)
        plan = await make_plan(api, amount=900, trial_days=3)
        clock = await make_clock(api, start)
        subs = []
        for _ in range(3):
            customer = await make_customer(api)
            subs.append(
                await subscribe(
                    api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
                )
            )
        await advance(api, clock["id"], start + timedelta(days=3 + 3 * 31))  # three renewals

        for sub in subs:
            timeline = ok(await api.get("/v1/events", params={"subscription_id": sub["id"]}))
            expected = [e["id"] for e in timeline]
            assert len(expected) >= 8
            await receiver.wait_for(lambda s=sub, e=expected: receiver.first_seen_ids(s["id"]) == e)
            got = [p["id"] for p in receiver.for_subscription(sub["id"])]
            assert got == expected, "each event once, in timeline order"

        # The receipts (email lane) may still be going out; then nothing may be left.
        async def left() -> list[object]:
            async with transaction(engine) as session:
                rows = await session.execute(
                    select(NotificationOutbox).where(
                        NotificationOutbox.subscription_id.in_([s["id"] for s in subs])  # type: ignore[attr-defined]
                    )
                )
                return list(rows.all())

        await eventually(left, lambda rows: rows == [], what="nothing left in the outbox")
        assert sum(d.attempts for d in extra) > 0, "the extra dispatchers took a share"
    finally:
        for dispatcher in extra:
            await dispatcher.stop()
        await deliveries.aclose()
        if endpoint is not None:
            ok(await api.delete(f"/v1/webhook_endpoints/{endpoint['id']}"))
        await receiver.stop()


class _RecordingDeliveries(Deliveries):
    """Real outbox, real dispatcher; only the sending is replaced, to see the batches."""

    def __init__(self, engine: AsyncEngine, stack: Stack) -> None:
        super().__init__(engine, stack.settings)
        self.batches: list[list[str]] = []

    async def emails(
        self, batch: Sequence[tuple[str, int]], *, max_attempts: int
    ) -> dict[str, NotificationOutcome]:
        self.batches.append(sorted(event_id for event_id, _ in batch))
        return {event_id: NotificationOutcome(status="sent", attempts=1) for event_id, _ in batch}


class _CountingDispatcher(OutboxDispatcher):
    """Counts its claims, so a test knows when it has looked at the outbox."""

    claims = 0

    async def _claim(self, limit: int) -> list[Claimed]:
        try:
            return await super()._claim(limit)
        finally:
            self.claims += 1


@pytest.mark.parametrize("linger", [0.0, 0.6])
async def test_a_burst_queued_row_by_row_goes_out_as_one_batch_after_the_linger(
    scratch: AsyncEngine, stack: Stack, linger: float
) -> None:
    deliveries = _RecordingDeliveries(scratch, stack)
    dispatcher = _CountingDispatcher(
        scratch,
        deliveries,
        DeliveryRetry(initial_ms=100, max_ms=500, max_attempts=3),
        poll_seconds=5.0,
        linger=linger,
    )
    dispatcher.start()
    # Its first look (at start, with nothing queued) is over: it waits for a wake-up.
    await eventually(lambda: dispatcher.claims >= 1, what="the dispatcher's first look")
    events = [f"evt_burst_{n}" for n in range(6)]
    try:
        # As projections queue receipts during a storm: one row at a time, each waking
        # the dispatcher.
        for n, event_id in enumerate(events):
            await _queue(scratch, [(f"sub_burst_{n}", EMAIL_LANE, event_id)], datetime.now(UTC))
            dispatcher.wake()
            await asyncio.sleep(0.05)
        await eventually(lambda: dispatcher.attempts >= len(events), what="every row sent")
    finally:
        await dispatcher.stop()
        await deliveries.aclose()
    assert sorted(e for batch in deliveries.batches for e in batch) == events, "each once"
    if linger:
        assert deliveries.batches == [events], "one claim, one batch"
    else:
        assert len(deliveries.batches) > 1, "without the linger the first row goes alone"
    async with transaction(scratch) as session:
        assert await outbox.pending(session) == 0
