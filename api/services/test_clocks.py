"""Advancing a test clock: the clock moves, then every subscription on it catches up."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.clock_advances import AdvanceFailure, drive_advance
from config import Settings
from db.models import TestClock
from db.repositories import test_clocks


async def advance(
    session: AsyncSession, temporal: Client, settings: Settings, clock: TestClock, to: datetime
) -> list[AdvanceFailure]:
    """Move `clock` to `to` and drive its subscriptions there; those still behind at the
    deadline. Commits the caller's unit of work before the workflows are sent the advance
    (the clock stays `advancing`, for the sweeper, should this request die), and `clock` is
    read again after."""
    await test_clocks.begin_advance(session, clock, to, datetime.now(UTC))
    await session.commit()
    failures = await drive_advance(session, temporal, settings, clock.id, to)
    await session.refresh(clock)
    return failures
