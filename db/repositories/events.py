"""The timeline: append-only lifecycle events."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Event


async def timeline(
    session: AsyncSession, *, subscription_id: str | None, customer_id: str | None, limit: int
) -> Sequence[Event]:
    query = select(Event).order_by(col(Event.seq)).limit(limit)
    if subscription_id:
        query = query.where(Event.subscription_id == subscription_id)
    if customer_id:
        query = query.where(Event.customer_id == customer_id)
    return (await session.exec(query)).all()
