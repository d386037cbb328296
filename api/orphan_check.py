"""Every API process looks, now and then, for subscriptions whose workflow has closed
behind the read model's back (`api.reconcile`), and reports how many it found: the
`recur_orphaned_subscriptions` gauge on /metrics, `orphaned_subscriptions` in /readyz, and
a warning naming them. Repairing them is an operator's decision: `recur subs reconcile`."""

from __future__ import annotations

import structlog
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api import reconcile
from api.periodic import Periodic

log = structlog.get_logger()


class OrphanCheck(Periodic):
    name = "orphan_check"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: Client,
        gauge: Gauge,
        interval: float,
    ) -> None:
        super().__init__(interval)
        self._sessions = sessions
        self._client = client
        self.found: int | None = None  # None until the first check
        self._gauge = gauge

    async def sweep(self) -> int:
        async with self._sessions() as session:
            orphans = await reconcile.find(self._client, session)
        self.found = len(orphans)
        self._gauge.set(self.found)
        if orphans:
            log.warning(
                "subscriptions.orphaned",
                count=len(orphans),
                subscription_ids=[o.subscription_id for o in orphans[:20]],
            )
        return self.found
