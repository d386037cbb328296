"""Entitlements: which features a customer may use, and because of which subscription."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.driver import ConnectionLost, compact, fetch_all
from db.models import Entitlement


async def for_customer(session: AsyncSession, customer_id: str) -> Sequence[Entitlement]:
    query = (
        select(Entitlement)
        .where(Entitlement.customer_id == customer_id)
        .order_by(col(Entitlement.feature), col(Entitlement.subscription_id))
    )
    return (await session.exec(query)).all()


_CHECK = compact(
    """
    SELECT max(active_until) AS active_until, count(*) AS grants FROM entitlements
    WHERE customer_id = %(customer_id)s AND feature = %(feature)s
    """
)


async def check_fast(
    engine: AsyncEngine, customer_id: str, feature: str
) -> tuple[bool, datetime | None]:
    """May the customer use the feature, and until when: one indexed lookup on
    (customer_id, feature), on an autocommit engine (`db.engine.get_read_engine`): one round
    trip, no ORM. A connection that died in the pool is retried once on a fresh one."""
    params = {"customer_id": customer_id, "feature": feature}
    for attempt in (1, 2):
        try:
            async with engine.connect() as conn:
                (row,) = await fetch_all(conn, _CHECK, params)
            return row["grants"] > 0, row["active_until"]
        except ConnectionLost:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def features_of(session: AsyncSession, subscription_id: str) -> list[str]:
    query = (
        select(Entitlement.feature)
        .where(Entitlement.subscription_id == subscription_id)
        .order_by(col(Entitlement.feature))
    )
    return list((await session.exec(query)).all())
