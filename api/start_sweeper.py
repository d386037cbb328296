"""Starts the subscription workflows that a create left unstarted.

Creating a subscription with a trial commits the subscription and a start record together,
then starts the workflow and hands the record to `forget`, which deletes such records in
batches, a fraction of a second later (a delete of its own cost a create more CPU than
its inserts). If Temporal could not be reached, or the API process stopped between the
commit and the start, the record stays; every API process runs this loop, which starts
the workflows of records older than `grace` (so it never races a request still in flight)
and deletes them. A record whose workflow already runs (its batch delete was lost) is
simply deleted. Several API processes share the work: a record is locked by one at a time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api import lifecycle
from api.periodic import Periodic
from config import Settings
from db.engine import unit_of_work
from db.repositories import starts
from workflows.messages import SubscriptionInput

log = structlog.get_logger()

FORGET_AFTER_SECONDS = 0.2


class StartSweeper(Periodic):
    name = "start_sweeper"

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
        super().__init__(interval)
        self._sessions = sessions
        self._client = client
        self._settings = settings
        self._grace = grace
        self._batch = batch
        self._forgotten: set[str] = set()
        self._flush: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        await super().stop()
        if self._flush is not None:
            await self._flush

    def forget(self, subscription_id: str) -> None:
        """The workflow of this start runs: delete its record (soon, with others)."""
        self._forgotten.add(subscription_id)
        if self._flush is None:
            self._flush = asyncio.create_task(self._forget_batch())

    async def _forget_batch(self) -> None:
        await asyncio.sleep(FORGET_AFTER_SECONDS)
        ids, self._forgotten = sorted(self._forgotten), set()
        self._flush = None
        try:
            async with unit_of_work(self._sessions) as session:
                await starts.done(session, ids)
        except Exception:
            log.exception("start_sweeper.forget_failed", count=len(ids))

    async def sweep(self) -> int:
        """Start what is overdue now; returns how many workflows were started."""
        older_than = datetime.now(UTC) - self._grace
        started = 0
        # One transaction: the records stay locked (other processes skip them) while their
        # workflows are started.
        async with unit_of_work(self._sessions) as session:
            for row in await starts.overdue(session, older_than=older_than, limit=self._batch):
                start_input = SubscriptionInput.model_validate(row.input)
                error = await lifecycle.launch(self._client, self._settings, start_input)
                if error is None:
                    await starts.done(session, [row.subscription_id])
                    started += 1
                    log.info("subscription.start_recovered", subscription_id=row.subscription_id)
                else:
                    await starts.failed(session, row.subscription_id, error)
        return started
