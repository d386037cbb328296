"""Starts the subscription workflows that a create left unstarted.

Creating a subscription with a trial commits the subscription and a start record together,
then starts the workflow and deletes the record. If Temporal could not be reached, or the
API process stopped between the commit and the start, the record stays; every API process
runs this loop, which starts the workflows of records older than `grace` (so it never races
a request still in flight) and deletes them. Several API processes share the work: a record
is locked by one of them at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api import lifecycle
from config import Settings
from db.repositories import starts
from workflows.messages import SubscriptionInput

log = structlog.get_logger()


class StartSweeper:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Client,
        settings: Settings,
        *,
        interval: float,
        grace: timedelta,
        batch: int = 50,
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._settings = settings
        self._interval = interval
        self._grace = grace
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self.started = 0  # workflows this sweeper started, for tests

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="start-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("start_sweeper.failed")

    async def sweep(self) -> int:
        """Start what is overdue now; returns how many workflows were started."""
        older_than = datetime.now(UTC) - self._grace
        started = 0
        async with self._sessions() as session:
            for row in await starts.overdue(session, older_than=older_than, limit=self._batch):
                start_input = SubscriptionInput.model_validate(row.input)
                # `launch` commits, which releases the locks of the rows not reached yet:
                # another sweeper may take those; a start made twice is "already started".
                if await lifecycle.launch(self._client, self._settings, session, start_input):
                    started += 1
                    log.info("subscription.start_recovered", subscription_id=row.subscription_id)
        self.started += started
        return started
