"""Email attempts on their own (`Deliveries.emails`): a failed send is recorded as retrying,
the last attempt gives up, a sent email is never sent again."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy.dialects.postgresql import insert

from activities.notifications import Deliveries
from db.delivery_tables import EmailNotification
from db.engine import get_engine, transaction
from db.models import Event
from devstack.process import free_port
from domain.notifications import NotificationOutcome
from tests.conftest import Stack
from tests.helpers import make_customer


async def _attempt(deliveries: Deliveries, event_id: str, n: int) -> NotificationOutcome:
    outcomes = await deliveries.emails([(event_id, n)], max_attempts=2)
    return outcomes[event_id]


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
    down = Deliveries(engine, dead)

    first = await _attempt(down, event_id, 1)
    assert (first.status, first.attempts) == ("retrying", 1)
    async with transaction(engine) as session:
        row = await session.get(EmailNotification, event_id)
        assert row is not None
        assert (row.status, row.attempts, row.sent_at) == ("retrying", 1, None)
        assert row.last_error and row.last_error.startswith("ConnectionRefusedError")

    outcome = await _attempt(down, event_id, 2)
    assert (outcome.status, outcome.attempts) == ("failed", 2)
    await down.aclose()

    up = Deliveries(engine, stack.settings)
    sent = await _attempt(up, event_id, 1)
    assert (sent.status, sent.attempts) == ("sent", 3)
    again = await _attempt(up, event_id, 2)
    assert again.status == "duplicate"
    await up.aclose()
    async with transaction(engine) as session:
        row = await session.get(EmailNotification, event_id)
        assert row is not None and row.status == "sent" and row.sent_at is not None
        assert row.recipient == customer["email"]
