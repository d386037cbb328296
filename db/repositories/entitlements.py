"""Entitlements: which features a customer may use, and because of which subscription."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Entitlement
from domain.contracts import EntitlementGrant

_TABLE = Entitlement.__table__  # type: ignore[attr-defined]
_DROP_OTHERS = delete(_TABLE).where(
    _TABLE.c.subscription_id == bindparam("subscription_id"),
    _TABLE.c.feature.not_in(bindparam("features", expanding=True)),
)
_DROP_ALL = delete(_TABLE).where(_TABLE.c.subscription_id == bindparam("subscription_id"))


def _grant_statement() -> Any:
    statement = insert(_TABLE)
    return statement.on_conflict_do_update(
        index_elements=["subscription_id", "feature"],
        set_={
            "plan_id": statement.excluded.plan_id,
            "active_until": statement.excluded.active_until,
        },
    )


_GRANT = _grant_statement()


async def replace_for_subscription(
    session: AsyncSession,
    *,
    subscription_id: str,
    customer_id: str,
    grant: EntitlementGrant,
    now: datetime,
) -> None:
    """Make the subscription's rows exactly `grant.features` (idempotent)."""
    if not grant.features:
        await session.execute(_DROP_ALL, {"subscription_id": subscription_id})
        return
    await session.execute(
        _DROP_OTHERS, {"subscription_id": subscription_id, "features": list(grant.features)}
    )
    await session.execute(
        _GRANT,
        [
            {
                "customer_id": customer_id,
                "feature": feature,
                "subscription_id": subscription_id,
                "plan_id": grant.plan_id,
                "active_until": grant.active_until,
                "granted_at": now,
            }
            for feature in grant.features
        ],
    )


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
