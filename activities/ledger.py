"""Projection activity: the read model, timeline and entitlements move together."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from db.engine import transaction
from db.repositories import entitlements, events, invoices, subscriptions
from domain.contracts import SyncRequest

log = structlog.get_logger()


class LedgerActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @activity.defn(name="sync_subscription")
    async def sync_subscription(self, req: SyncRequest) -> None:
        """One transaction, safe to repeat: versions guard the row, ids guard the events."""
        view = req.subscription
        now = datetime.now(UTC)
        async with transaction(self._engine) as session:
            await subscriptions.upsert_view(session, view, now)
            await events.append(session, req.events, now)
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
