"""Projection activity: the read model, timeline, entitlements and the deliveries of new
events (the notification outbox) move together, in one statement.

A projection that fails is retried for ever (the workflow waits on it), so one that keeps
failing (bad data, a broken database) must not go unseen: every failed attempt is counted
in `recur_projection_failures` and logged as `projection.failed` with the subscription id,
and the attempt that finally succeeds is logged as `projection.recovered`. Fixing the cause
repairs the subscription: the next retry writes the projection and the workflow goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from db import balance_ledger
from db.engine import transaction
from db.repositories.projection import write_projection
from domain.contracts import SyncRequest

FAILURES = "recur_projection_failures"

log = structlog.get_logger()


class LedgerActivities:
    def __init__(self, engine: AsyncEngine, queued: Callable[[], None] | None = None) -> None:
        # The projection is one statement (db.repositories.projection): run on its own, it
        # is atomic.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._engine = engine
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
        try:
            async with self._autocommit.connect() as conn:
                queued = await write_projection(conn, req, now)
        except Exception as err:
            _failed(view.id, err)
            raise
        info = activity.info()
        if info.attempt > 1 and info.activity_type == "sync_subscription":
            # A warning, like the failures it ends: it closes an incident in the same log level.
            log.warning(
                "projection.recovered",
                workflow_id=info.workflow_id,
                subscription_id=view.id,
                attempt=info.attempt,
            )
        restored = 0
        if voided := [i for i, status in req.invoice_status.items() if status == "void"]:
            # Credit a voided invoice had applied goes back to the balance.
            async with transaction(self._engine) as session:
                for invoice_id in voided:
                    restored += await balance_ledger.restore_voided(session, invoice_id, now)
        if (queued or restored) and self._queued is not None:
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


def _failed(subscription_id: str, err: Exception) -> None:
    """Count and log a failed attempt. Only the error's class and SQLSTATE are logged: the
    statement's parameters (names, emails) stay out of the logs."""
    info = activity.info()
    cause = getattr(err, "orig", None) or err
    activity.metric_meter().create_counter(
        FAILURES, "Projection attempts that failed (each is retried until one succeeds)"
    ).add(1)
    log.error(
        "projection.failed",
        workflow_id=info.workflow_id,
        subscription_id=subscription_id,
        attempt=info.attempt,
        error=type(cause).__name__,
        sqlstate=getattr(cause, "sqlstate", None),
    )
