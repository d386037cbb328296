"""Rows put straight into the notification outbox, for tests of what takes them out (in
Recur, a projection queues them: `db.projection`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from db.delivery_tables import NotificationOutbox


async def queue_deliveries(
    session: AsyncSession, deliveries: Sequence[tuple[str, str, str]], now: datetime
) -> None:
    """Queue (subscription_id, target, event_id) deliveries due at `now`; one already
    queued is kept (the outbox holds a delivery once)."""
    rows = [
        {
            "subscription_id": sub,
            "target": target,
            "event_id": event_id,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for sub, target, event_id in deliveries
    ]
    await session.execute(insert(NotificationOutbox).on_conflict_do_nothing(), rows)
