"""Projection activity: the read model, timeline, entitlements and the deliveries of new
events (the notification outbox) move together, in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from db.engine import transaction
from db.repositories import entitlements, events, invoices, outbox, subscriptions
from db.repositories.notifications import endpoint_filters
from domain.contracts import SyncRequest
from domain.notifications import targets_for

log = structlog.get_logger()


class LedgerActivities:
    def __init__(self, engine: AsyncEngine, queued: Callable[[], None] | None = None) -> None:
        self._engine = engine
        # Called after a commit that queued deliveries: wakes this process's dispatcher.
        self._queued = queued

    @activity.defn(name="sync_subscription")
    async def sync_subscription(self, req: SyncRequest) -> None:
        """One transaction, safe to repeat: versions guard the row, ids guard the events."""
        view = req.subscription
        now = datetime.now(UTC)
        queued: list[tuple[str, str, str]] = []
        async with transaction(self._engine) as session:
            await subscriptions.upsert_view(session, view, now)
            # Only events this attempt inserted get deliveries: a repeated attempt (or a
            # replayed one) finds its events written and queues nothing twice.
            written = await events.append(session, req.events, now)
            if written:
                endpoints = await endpoint_filters(session)
                queued = [
                    (view.id, target, e.id)
                    for e in req.events
                    if e.id in written
                    for target in targets_for(e.type, now, endpoints)
                ]
                await outbox.enqueue(session, queued, now)
            if req.entitlements is not None:
                await entitlements.replace_for_subscription(
                    session,
                    subscription_id=view.id,
                    customer_id=view.customer_id,
                    grant=req.entitlements,
                    now=now,
                )
            for invoice_id, status in req.invoice_status.items():
                await invoices.set_invoice_status(session, invoice_id, status)
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
