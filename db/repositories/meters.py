"""Meters and the usage terms of plans (metered prices, feature limits)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.usage_tables import Meter, PlanFeatureLimit


async def insert_new(session: AsyncSession, meter: Meter) -> bool:
    """Insert the meter unless its id is taken (also by a concurrent request): whether it
    was inserted."""
    values = meter.model_dump()
    inserted = await session.execute(
        insert(Meter)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(col(Meter.id))
    )
    return inserted.first() is not None


def add_limits(session: AsyncSession, limits: list[PlanFeatureLimit]) -> None:
    session.add_all(limits)


async def get(session: AsyncSession, meter_id: str) -> Meter | None:
    return await session.get(Meter, meter_id)


async def all_meters(session: AsyncSession) -> Sequence[Meter]:
    return (await session.exec(select(Meter).order_by(col(Meter.created_at), col(Meter.id)))).all()


async def missing(session: AsyncSession, meter_ids: set[str]) -> list[str]:
    """The ids among `meter_ids` that name no meter."""
    if not meter_ids:
        return []
    found = set((await session.exec(select(Meter.id).where(col(Meter.id).in_(meter_ids)))).all())
    return sorted(meter_ids - found)


async def limits_of(
    session: AsyncSession, plan_ids: list[str]
) -> dict[str, list[PlanFeatureLimit]]:
    """Each plan's limited features, in the plan's order."""
    if not plan_ids:
        return {}
    rows = (
        await session.exec(
            select(PlanFeatureLimit)
            .where(col(PlanFeatureLimit.plan_id).in_(plan_ids))
            .order_by(col(PlanFeatureLimit.plan_id), col(PlanFeatureLimit.position))
        )
    ).all()
    found: dict[str, list[PlanFeatureLimit]] = {}
    for row in rows:
        found.setdefault(row.plan_id, []).append(row)
    return found
