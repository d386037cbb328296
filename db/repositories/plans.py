"""The plan catalog."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Plan


def add(session: AsyncSession, plan: Plan) -> None:
    session.add(plan)


async def get(session: AsyncSession, plan_id: str) -> Plan | None:
    return await session.get(Plan, plan_id)


async def catalog(session: AsyncSession) -> Sequence[Plan]:
    """Every plan, cheapest first."""
    return (await session.exec(select(Plan).order_by(col(Plan.amount), col(Plan.id)))).all()


async def insert_missing(session: AsyncSession, values: dict[str, Any]) -> None:
    """Insert the plan unless one with its id exists (left as it is)."""
    await session.execute(
        insert(Plan).values(**values).on_conflict_do_nothing(index_elements=["id"])
    )
