"""Finishes test clock advances that no request is driving any more.

An advance answers once every subscription on the clock has caught up; a request that
timed out, answered with subscriptions still behind, or died with its API process leaves
the clock `advancing`. Every API process runs this loop: it claims advances not driven for
`grace` seconds (one process at a time, by row lock) and sends them again, which is
harmless for subscriptions already there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.clock_advances import drive_advance
from api.periodic import Periodic
from config import Settings
from db.engine import unit_of_work
from db.repositories import test_clocks

log = structlog.get_logger()


class ClockSweeper(Periodic):
    name = "clock_sweeper"

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], client: Client, settings: Settings
    ) -> None:
        super().__init__(settings.clock_sweep_seconds)
        self._sessions = sessions
        self._client = client
        self._settings = settings
        self._grace = timedelta(seconds=settings.clock_sweep_grace_seconds)

    async def sweep(self) -> int:
        """Drive the stale advances; returns how many were finished."""
        now = datetime.now(UTC)
        async with unit_of_work(self._sessions) as session:
            claimed = [
                (clock.id, clock.frozen_time)
                for clock in await test_clocks.claim_stale_advances(
                    session, driven_before=now - self._grace, now=now, limit=10
                )
            ]
        finished = 0
        for clock_id, to in claimed:
            # drive_advance commits what it does itself (it must not hold a transaction
            # while the workflows catch up).
            async with self._sessions() as session:
                failures = await drive_advance(session, self._client, self._settings, clock_id, to)
            log.info("test_clock.advance_resumed", test_clock_id=clock_id, behind=len(failures))
            finished += not failures
        return finished
