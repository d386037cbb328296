"""The timeline: append-only lifecycle events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Event
from domain.contracts import EventDraft

_APPEND = (
    insert(Event.__table__)  # type: ignore[attr-defined]
    .on_conflict_do_nothing(index_elements=["id"])
    .returning(Event.__table__.c.id)  # type: ignore[attr-defined]
)


async def append(session: AsyncSession, events: Sequence[EventDraft], now: datetime) -> set[str]:
    """Insert events in order; ids are stable, so a replayed batch inserts nothing.
    Returns the ids inserted now."""
    if not events:
        return set()
    rows = [
        {
            "id": e.id,
            "subscription_id": e.subscription_id,
            "customer_id": e.customer_id,
            "type": e.type,
            "data": e.data,
            "actor": e.actor,
            "occurred_at": e.occurred_at,
            "created_at": now,
        }
        for e in events
    ]
    # One statement for the batch (executemany with RETURNING becomes one multi-row INSERT,
    # rows in order, so `seq` follows the timeline).
    inserted = await session.execute(_APPEND, rows)
    return set(inserted.scalars())


async def timeline(
    session: AsyncSession, *, subscription_id: str | None, customer_id: str | None, limit: int
) -> Sequence[Event]:
    query = select(Event).order_by(col(Event.seq)).limit(limit)
    if subscription_id:
        query = query.where(Event.subscription_id == subscription_id)
    if customer_id:
        query = query.where(Event.customer_id == customer_id)
    return (await session.exec(query)).all()
