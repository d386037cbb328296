"""Entitlements: which features a customer may use, and because of which subscription."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Entitlement


async def for_customer(session: AsyncSession, customer_id: str) -> Sequence[Entitlement]:
    query = (
        select(Entitlement)
        .where(Entitlement.customer_id == customer_id)
        .order_by(col(Entitlement.feature), col(Entitlement.subscription_id))
    )
    return (await session.exec(query)).all()


CHECK_SQL = text(
    "SELECT max(active_until), count(*) FROM entitlements"
    " WHERE customer_id = :customer_id AND feature = :feature"
)


async def check_fast(
    engine: AsyncEngine, customer_id: str, feature: str
) -> tuple[bool, datetime | None]:
    """`check` on an autocommit engine (`db.engine.get_read_engine`): one round trip, no ORM.
    A connection that died in the pool is retried once on a fresh one."""
    params = {"customer_id": customer_id, "feature": feature}
    for attempt in (1, 2):
        try:
            async with engine.connect() as conn:
                row = (await conn.execute(CHECK_SQL, params)).one()
            return row[1] > 0, row[0]
        except DBAPIError as err:
            if attempt == 2 or not err.connection_invalidated:
                raise
    raise AssertionError("unreachable")


async def check(
    session: AsyncSession, customer_id: str, feature: str
) -> tuple[bool, datetime | None]:
    """The hot path: one indexed lookup on (customer_id, feature)."""
    row = (await session.execute(CHECK_SQL, {"customer_id": customer_id, "feature": feature})).one()
    return row[1] > 0, row[0]


async def features_of(session: AsyncSession, subscription_id: str) -> list[str]:
    query = (
        select(Entitlement.feature)
        .where(Entitlement.subscription_id == subscription_id)
        .order_by(col(Entitlement.feature))
    )
    return list((await session.exec(query)).all())
