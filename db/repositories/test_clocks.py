"""Test clocks and the advances in progress on them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import col, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import TestClock


def add(session: AsyncSession, clock: TestClock) -> None:
    session.add(clock)


async def get(session: AsyncSession, clock_id: str) -> TestClock | None:
    return await session.get(TestClock, clock_id)


async def begin_advance(
    session: AsyncSession, clock: TestClock, to: datetime, now: datetime
) -> None:
    """The clock moves to `to` (never back) and stays `advancing` until every subscription
    on it has caught up."""
    clock.frozen_time = max(clock.frozen_time, to)
    clock.status = "advancing"
    clock.advance_driven_at = now
    session.add(clock)


async def finish_advance(session: AsyncSession, clock_id: str, to: datetime) -> None:
    """Ready again, unless another request has since moved the clock further."""
    await session.execute(
        update(TestClock)
        .where(col(TestClock.id) == clock_id, col(TestClock.frozen_time) == to)
        .values(status="ready", advance_driven_at=None)
    )


async def claim_stale_advances(
    session: AsyncSession, driven_before: datetime, now: datetime, limit: int
) -> Sequence[TestClock]:
    """Advances no request has driven since `driven_before` (the request died or gave up),
    claimed for the caller: marked driven `now`, so other API processes leave them alone."""
    stale = (
        select(TestClock)
        .where(
            col(TestClock.status) == "advancing",
            or_(
                col(TestClock.advance_driven_at) < driven_before,
                col(TestClock.advance_driven_at).is_(None),  # stuck before this column existed
            ),
        )
        .order_by(col(TestClock.advance_driven_at))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    clocks = (await session.exec(stale)).all()
    for clock in clocks:
        clock.advance_driven_at = now
        session.add(clock)
    return clocks
