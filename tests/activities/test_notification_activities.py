"""The email activity on its own: a failed send is recorded and retried, the last attempt
gives up without raising, a sent email is never sent again."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.dialects.postgresql import insert
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notifications import Deliveries, NotificationActivities
from db.engine import get_engine, transaction
from db.models import EmailNotification, Event
from devstack.process import free_port
from domain.notifications import EmailRequest
from tests.conftest import Stack
from tests.helpers import make_customer


def _attempt(n: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=n)
    return env


async def test_email_retries_then_gives_up_and_never_resends(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    customer = await make_customer(app_client)
    engine = get_engine(stack.settings.effective_database_url)
    event_id = f"evt_test_{uuid.uuid4().hex[:12]}"
    now = datetime.now(UTC)
    async with transaction(engine) as session:
        await session.execute(
            insert(Event).values(
                id=event_id,
                subscription_id=None,
                customer_id=customer["id"],
                type="subscription.canceled",
                data={"reason": "requested"},
                occurred_at=now,
                created_at=now,
            )
        )
    dead = stack.settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{free_port()}"})
    down = NotificationActivities(Deliveries(engine, dead), engine)
    request = EmailRequest(event_id=event_id, max_attempts=2)

    with pytest.raises(ApplicationError):
        await _attempt(1).run(down.send_email, request)
    async with transaction(engine) as session:
        row = await session.get(EmailNotification, event_id)
        assert row is not None
        assert (row.status, row.attempts, row.sent_at) == ("retrying", 1, None)
        assert row.last_error and row.last_error.startswith("ConnectionRefusedError")

    outcome = await _attempt(2).run(down.send_email, request)
    assert (outcome.status, outcome.attempts) == ("failed", 2)

    up = NotificationActivities(Deliveries(engine, stack.settings), engine)
    sent = await _attempt(1).run(up.send_email, request)
    assert (sent.status, sent.attempts) == ("sent", 3)
    again = await _attempt(2).run(up.send_email, request)
    assert again.status == "duplicate"
    async with transaction(engine) as session:
        row = await session.get(EmailNotification, event_id)
        assert row is not None and row.status == "sent" and row.sent_at is not None
        assert row.recipient == customer["email"]
