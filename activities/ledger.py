"""Projection activity: the read model, timeline, entitlements and the deliveries of new
events (the notification outbox) move together, in one statement."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from db.projection import write_projection
from domain.contracts import SyncRequest

log = structlog.get_logger()


class LedgerActivities:
    def __init__(self, engine: AsyncEngine, queued: Callable[[], None] | None = None) -> None:
        # The projection is one statement (db.projection): run on its own, it is atomic.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        # Called after a commit that queued deliveries: wakes this process's dispatcher.
        self._queued = queued

    @activity.defn(name="sync_subscription")
    async def sync_subscription(self, req: SyncRequest) -> None:
        await self.project(req)

    async def project(self, req: SyncRequest) -> None:
        """One statement, safe to repeat: versions guard the row, ids guard the events.
        Also run by `charge_invoice` for the projection a paid charge was given."""
        view = req.subscription
        now = datetime.now(UTC)
        async with self._autocommit.connect() as conn:
            queued = await write_projection(conn, req, now)
        if queued and self._queued is not None:
            self._queued()
        renewals = sum(1 for e in req.events if e.type == "subscription.renewed")
        if renewals:
            activity.metric_meter().create_counter("recur_renewals", "Paid renewals").add(renewals)
        log.info(
            "subscription.synced",
            workflow_id=activity.info().workflow_id,
            subscription_id=view.id,
            status=view.status,
            state_version=view.state_version,
            events=[e.type for e in req.events],
        )
