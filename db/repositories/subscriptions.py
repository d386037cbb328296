"""The subscription read model."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, literal
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Customer, Plan, Subscription, TestClock
from domain.status import TERMINAL

# Bound as plain text (a driver may bind an enum member by its name).
_ENDED = sorted(s.value for s in TERMINAL)

# Built once, with bound ids: every create runs it, and a statement built per call costs
# SQLAlchemy its joins and a fresh cache key each time.
_SUBSCRIBING = (
    sa_select(Customer, Plan, TestClock)
    .select_from(sa_select(literal(1).label("one")).subquery())
    .outerjoin(Customer, col(Customer.id) == bindparam("customer_id"))
    .outerjoin(Plan, col(Plan.id) == bindparam("plan_id"))
    .outerjoin(TestClock, col(TestClock.id) == bindparam("test_clock_id"))
)


async def subscribing(
    session: AsyncSession, customer_id: str, plan_id: str, test_clock_id: str | None
) -> tuple[Customer | None, Plan | None, TestClock | None]:
    """What creating a subscription reads, in one round trip: the customer, the plan and
    the test clock (each None when there is none by that id)."""
    params = {"customer_id": customer_id, "plan_id": plan_id, "test_clock_id": test_clock_id}
    customer, plan, clock = (await session.execute(_SUBSCRIBING, params)).one()
    return customer, plan, clock


async def get(session: AsyncSession, subscription_id: str) -> Subscription | None:
    return await session.get(Subscription, subscription_id)


async def list_filtered(
    session: AsyncSession,
    *,
    customer_id: str | None = None,
    status: str | None = None,
    plan_id: str | None = None,
    test_clock_id: str | None = None,
    limit: int = 100,
) -> Sequence[Subscription]:
    query = (
        select(Subscription)
        .order_by(col(Subscription.created_at), col(Subscription.id))
        .limit(limit)
    )
    if customer_id:
        query = query.where(Subscription.customer_id == customer_id)
    if status:
        query = query.where(Subscription.status == status)
    if plan_id:
        query = query.where(Subscription.plan_id == plan_id)
    if test_clock_id:
        query = query.where(Subscription.test_clock_id == test_clock_id)
    return (await session.exec(query)).all()


async def ids_on_clock(session: AsyncSession, test_clock_id: str) -> Sequence[str]:
    query = select(Subscription.id).where(
        Subscription.test_clock_id == test_clock_id,
        col(Subscription.status).not_in(_ENDED),
    )
    return (await session.exec(query)).all()


async def live_statuses(session: AsyncSession, subscription_ids: Sequence[str]) -> dict[str, str]:
    """The read model's status of those of `subscription_ids` that have not ended."""
    if not subscription_ids:
        return {}
    query = select(Subscription.id, Subscription.status).where(
        col(Subscription.id).in_(subscription_ids),
        col(Subscription.status).not_in(_ENDED),
    )
    return dict((await session.exec(query)).all())
