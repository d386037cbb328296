"""Subscription workflows still to be started (see `SubscriptionStart`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import SubscriptionStart

_TABLE = SubscriptionStart.__table__  # type: ignore[attr-defined]
_RECORD = insert(_TABLE)
_DONE = delete(_TABLE).where(_TABLE.c.subscription_id.in_(bindparam("ids", expanding=True)))


async def record(
    session: AsyncSession, subscription_id: str, workflow_input: dict[str, Any], now: datetime
) -> None:
    values = {"subscription_id": subscription_id, "input": workflow_input, "attempts": 0}
    await session.execute(_RECORD, {**values, "created_at": now})


async def done(session: AsyncSession, subscription_ids: Sequence[str]) -> None:
    """The workflows of these starts run: delete their records."""
    if subscription_ids:
        await session.execute(_DONE, {"ids": list(subscription_ids)})


async def overdue(
    session: AsyncSession, *, older_than: datetime, limit: int
) -> Sequence[SubscriptionStart]:
    """Starts left behind, oldest first, locked for this transaction (others skip them)."""
    query = (
        select(SubscriptionStart)
        .where(col(SubscriptionStart.created_at) < older_than)
        .order_by(col(SubscriptionStart.created_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(query)).scalars().all()


async def failed(session: AsyncSession, subscription_id: str, error: str) -> None:
    await session.execute(
        update(SubscriptionStart)
        .where(col(SubscriptionStart.subscription_id) == subscription_id)
        .values(attempts=SubscriptionStart.attempts + 1, last_error=error[:500])
    )
