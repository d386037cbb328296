"""A worker that dies in the middle of a batch of emails, with the real outbox, dispatcher,
SMTP sink and PostgreSQL (a database of its own, so the session's dispatcher stays out).

What the README promises and this proves: every email goes out at least once, each copy of
it with the same `Message-ID`; the emails the relay accepted are recorded as sent as they go
(here one by one), so of a batch only the email in flight when the worker died goes out
twice, and the attempt that sends it again knows it may be a resend. The death is injected
where it hurts most: after the relay accepted a message and before its record was written
(the process stops there: the exception is not one the dispatcher handles, so the claims
stay until the lease ends).
"""

from __future__ import annotations

import asyncio
import email
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.dispatcher import OutboxDispatcher
from activities.notifications import Deliveries
from db.delivery_tables import EmailNotification
from db.engine import transaction
from db.models import Customer, Event
from db.repositories import notifications as repo
from db.repositories import outbox
from devstack.process import free_port
from domain.notifications import EMAIL_LANE, DeliveryRetry
from tests.activities.queue import queue_deliveries
from tests.conftest import Stack
from tests.helpers import eventually

LEASE = timedelta(seconds=3)  # short, and still longer than the steps before the death


class WorkerDied(BaseException):
    """Not an Exception: nothing in the worker handles it, as nothing outlives a kill -9."""


async def _queue_cancellations(engine: AsyncEngine, count: int) -> list[str]:
    """`count` cancellation emails to as many customers, each on a lane of its own."""
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]
    event_ids = [f"evt_once_{run}_{n}" for n in range(count)]
    async with transaction(engine) as session:
        for n, event_id in enumerate(event_ids):
            customer_id = f"cus_once_{run}_{n}"
            await session.execute(
                insert(Customer).values(
                    id=customer_id,
                    email=f"once{n}.{run}@example.com",
                    name=f"Fan {n}",
                    created_at=now,
                )
            )
            await session.execute(
                insert(Event).values(
                    id=event_id,
                    subscription_id=f"sub_once_{run}_{n}",
                    customer_id=customer_id,
                    type="subscription.canceled",
                    data={"reason": "requested"},
                    occurred_at=now,
                    created_at=now,
                )
            )
        await queue_deliveries(
            session, [(f"sub_once_{run}_{n}", EMAIL_LANE, e) for n, e in enumerate(event_ids)], now
        )
    return event_ids


def _copies(maildir: Path, event_ids: Sequence[str]) -> dict[str, list[str]]:
    """The Message-ID of every copy the SMTP sink received of each event's email."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in maildir.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes())
        event_id = message["X-Recur-Event-Id"]
        if event_id in event_ids:
            found[event_id].append(message["Message-ID"])
    return found


def _dispatcher(engine: AsyncEngine, deliveries: Deliveries) -> OutboxDispatcher:
    return OutboxDispatcher(
        engine,
        deliveries,
        DeliveryRetry(initial_ms=100, max_ms=500, max_attempts=5),
        email_batch=16,
        poll_seconds=0.1,
        linger=0.3,  # the five rows go out as one batch
        lease=LEASE,
    )


async def test_a_worker_dying_mid_batch_resends_only_the_email_in_flight_with_its_message_id(
    scratch: AsyncEngine, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    event_ids = await _queue_cancellations(scratch, 5)
    in_flight = event_ids[2]  # accepted by the relay, never recorded
    recorded = repo.record_email_attempts
    died: list[str] = []

    async def dies_recording_the_third(
        session: Any, attempts: Sequence[repo.EmailAttempt], now: datetime
    ) -> dict[str, int]:
        if any(a.event_id == in_flight for a in attempts):
            died.append(in_flight)
            raise WorkerDied
        return await recorded(session, attempts, now)

    monkeypatch.setattr(repo, "record_email_attempts", dies_recording_the_third)
    first = Deliveries(scratch, stack.settings)
    first.record_every = 0  # each email recorded on its own: the third is the one in flight
    dying = _dispatcher(scratch, first)
    dying.start()
    maildir = stack.settings.data_dir / "mail"
    # The relay accepted the third email, and the worker died recording it.
    await eventually(
        lambda: died and in_flight in _copies(maildir, event_ids), timeout=15, what="the death"
    )
    await dying.stop(timeout=1)  # the process is gone; its claims stay until the lease ends
    await first.aclose()
    monkeypatch.setattr(repo, "record_email_attempts", recorded)
    async with transaction(scratch) as session:
        claimed = await outbox.claim(
            session, limit=10, now=datetime.now(UTC), until=datetime.now(UTC)
        )
    assert claimed == [], "the dead worker's claims hold until the lease ends"

    second = Deliveries(scratch, stack.settings)
    survivor = _dispatcher(scratch, second)
    survivor.start()

    async def pending() -> int:
        async with transaction(scratch) as session:
            return await outbox.pending(session)

    try:
        await eventually(pending, lambda left: left == 0, timeout=20, what="an empty outbox")
    finally:
        await survivor.stop()
        await second.aclose()

    copies = _copies(maildir, event_ids)
    assert Counter({e: len(copies[e]) for e in event_ids}) == Counter(
        {e: 2 if e == in_flight else 1 for e in event_ids}
    ), "only the email in flight when the worker died went out twice"
    for event_id in event_ids:
        assert set(copies[event_id]) == {f"<{event_id}@recur>"}, "every copy, one Message-ID"
    # The one in flight and the two not reached were marked "sending": each a possible resend.
    assert second.possible_resends == 3, "the resend was known to be a possible duplicate"
    async with transaction(scratch) as session:
        rows = (
            await session.execute(
                select(EmailNotification).where(EmailNotification.event_id.in_(event_ids))  # type: ignore[attr-defined]
            )
        ).scalars()
        assert {(r.event_id, r.status) for r in rows} == {(e, "sent") for e in event_ids}


class _SlowRelay:
    """An SMTP server that takes `delay` seconds to accept each message."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.original_content or envelope.content)
        self.received.append(message["X-Recur-Event-Id"])
        return "250 Message accepted"


async def test_a_batch_stops_sending_before_its_claim_can_run_out(
    scratch: AsyncEngine, stack: Stack
) -> None:
    """Past half the lease the rest of a batch waits for its next attempt: another worker may
    claim the rows when the lease ends, and must not find an email still being sent."""
    relay = _SlowRelay(delay=0.6)
    port = free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    settings = stack.settings.model_copy(
        update={"smtp_url": f"smtp://127.0.0.1:{port}", "outbox_lease_seconds": 2}
    )
    deliveries = Deliveries(scratch, settings)
    event_ids = await _queue_cancellations(scratch, 4)
    try:
        outcomes = await deliveries.emails([(e, 1) for e in event_ids], max_attempts=5)
    finally:
        await deliveries.aclose()
        controller.stop()
    assert relay.received == event_ids[:2], "sent until half the lease (1 s) had passed"
    assert [outcomes[e].status for e in event_ids] == ["sent", "sent", "retrying", "retrying"]
    async with transaction(scratch) as session:
        rows = (
            await session.execute(
                select(EmailNotification).where(EmailNotification.event_id.in_(event_ids))  # type: ignore[attr-defined]
            )
        ).scalars()
        status = {r.event_id: (r.status, r.last_error) for r in rows}
    assert status[event_ids[3]] == ("retrying", "not sent: the batch ran out of time")


def test_the_readme_states_the_email_guarantee_this_proves(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    section = readme[readme.index("**Email.**") : readme.index("## Looking at a subscription")]
    text = re.sub(r"\s+", " ", section)
    assert "at least once" in text
    assert "same `Message-ID`" in text
    assert "does not send twice" not in text, "the old, untrue promise"
