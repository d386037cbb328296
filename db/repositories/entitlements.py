"""Entitlements: which features a customer may use, and because of which subscription."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, exists, func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.driver import ConnectionLost, compact, fetch_all
from db.models import Entitlement, Subscription, TestClock


def _ended() -> ColumnElement[bool]:
    """The entitlement's subscription is canceling at period end and that end has passed by
    its clock (the test clock's time, if it has one): still active while its cancel waits
    the usage grace, but its service has ended."""
    clock_now = func.coalesce(col(TestClock.frozen_time), func.now())
    return exists(
        select(col(Subscription.id))
        .outerjoin(TestClock, col(TestClock.id) == col(Subscription.test_clock_id))
        .where(
            col(Subscription.id) == col(Entitlement.subscription_id),
            col(Subscription.cancel_at_period_end),
            col(Subscription.current_period_end) <= clock_now,
        )
    )


async def for_customer(session: AsyncSession, customer_id: str) -> Sequence[Entitlement]:
    """The customer's grants, as the entitlement check sees them."""
    query = (
        select(Entitlement)
        .where(Entitlement.customer_id == customer_id, ~_ended())
        .order_by(col(Entitlement.feature), col(Entitlement.subscription_id))
    )
    return (await session.exec(query)).all()


# The check with usage limits, still one statement: per granting subscription, its
# entitlement, the feature's limit on the plans of its items (`subscription_items`; the
# greatest when several items limit it) and the quantity of the limit's meter in the
# subscription's current period, read from the running aggregate (never from raw events):
# its latest stretch, when a plan change split the period. The lateral lookups run only
# for a limited feature. A subscription canceling at period end grants nothing once that
# end has passed by its clock (the test clock's time, if it has one), though it is still
# active: with metered items its cancel waits the usage grace to bill late events.
_CHECK_USAGE = compact(
    """
    SELECT e.active_until, l.usage_limit, u.quantity FROM entitlements e
    LEFT JOIN LATERAL (
        SELECT fl.usage_limit, fl.meter_id FROM subscription_items i
        JOIN plan_feature_limits fl ON fl.plan_id = i.plan_id AND fl.feature = e.feature
        WHERE i.subscription_id = e.subscription_id
        ORDER BY fl.usage_limit DESC LIMIT 1
    ) l ON true
    LEFT JOIN LATERAL (
        SELECT a.quantity FROM subscriptions s JOIN usage_aggregates a
        ON a.subscription_id = s.id AND a.meter_id = l.meter_id
        AND a.period_start >= s.current_period_start AND a.period_start < s.current_period_end
        WHERE s.id = e.subscription_id AND l.meter_id IS NOT NULL
        ORDER BY a.period_start DESC LIMIT 1
    ) u ON true
    WHERE e.customer_id = %(customer_id)s AND e.feature = %(feature)s
    AND NOT EXISTS (
        SELECT 1 FROM subscriptions s LEFT JOIN test_clocks tc ON tc.id = s.test_clock_id
        WHERE s.id = e.subscription_id AND s.cancel_at_period_end
        AND s.current_period_end <= COALESCE(tc.frozen_time, now())
    )
    """
)


@dataclass(frozen=True)
class Grant:
    """One subscription's grant of a feature: its limit and use in the current period."""

    active_until: datetime | None
    limit: int | None
    used: Decimal


async def check_fast(engine: AsyncEngine, customer_id: str, feature: str) -> list[Grant]:
    """The grants of `feature` to the customer, on an autocommit engine
    (`db.engine.get_read_engine`): one round trip, no ORM. A connection that died in the
    pool is retried once on a fresh one."""
    params = {"customer_id": customer_id, "feature": feature}
    for attempt in (1, 2):
        try:
            async with engine.connect() as conn:
                rows = await fetch_all(conn, _CHECK_USAGE, params)
            return [
                Grant(r["active_until"], r["usage_limit"], r["quantity"] or Decimal(0))
                for r in rows
            ]
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
