"""Subscription items as the read model stores them (written by the projection)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Plan, SubscriptionItem


async def items_of(
    session: AsyncSession, subscription_ids: Sequence[str]
) -> dict[str, list[SubscriptionItem]]:
    """Each subscription's items in their order (one query for a whole list)."""
    if not subscription_ids:
        return {}
    query = (
        select(SubscriptionItem)
        .where(col(SubscriptionItem.subscription_id).in_(subscription_ids))
        .order_by(col(SubscriptionItem.subscription_id), col(SubscriptionItem.position))
    )
    found: dict[str, list[SubscriptionItem]] = {}
    for row in (await session.exec(query)).all():
        found.setdefault(row.subscription_id, []).append(row)
    return found


async def plans(session: AsyncSession, plan_ids: Sequence[str]) -> dict[str, Plan]:
    """The plans of `plan_ids` that exist, by id."""
    if not plan_ids:
        return {}
    query = select(Plan).where(col(Plan.id).in_(plan_ids))
    return {plan.id: plan for plan in (await session.exec(query)).all()}
