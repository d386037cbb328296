"""Projection activity: the read model, timeline and entitlements move together."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from config import Settings
from db.engine import transaction
from db.repositories import entitlements, events, invoices, subscriptions
from db.repositories.notifications import active_endpoints
from domain.contracts import SyncRequest
from domain.notifications import (
    EMAIL_TEMPLATES,
    DeliveryRetry,
    NotifierInput,
    NotifyBatch,
    notifier_workflow_id,
    wants,
)

log = structlog.get_logger()


class NotifierStarter:
    """Hands new events to the subscription's notifier workflow (signal-with-start)."""

    def __init__(self, client: Client, task_queue: str, template: NotifierInput) -> None:
        self._client = client
        self._task_queue = task_queue
        self._template = template

    @classmethod
    def from_settings(cls, client: Client, settings: Settings) -> NotifierStarter:
        retry = DeliveryRetry(
            initial_ms=settings.webhook_retry_initial_ms,
            max_ms=settings.webhook_retry_max_ms,
            max_attempts=settings.webhook_max_attempts,
        )
        template = NotifierInput(
            subscription_id="", retry=retry, idle_seconds=settings.notifier_idle_seconds
        )
        return cls(client, settings.task_queue, template)

    async def notify(self, subscription_id: str, event_ids: list[str]) -> None:
        await self._client.start_workflow(
            "NotifierWorkflow",
            self._template.model_copy(update={"subscription_id": subscription_id}),
            id=notifier_workflow_id(subscription_id),
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            start_signal="enqueue",
            start_signal_args=[NotifyBatch(event_ids=event_ids)],
            static_summary=f"notifications of {subscription_id}",
        )


class LedgerActivities:
    def __init__(self, engine: AsyncEngine, notifier: NotifierStarter | None = None) -> None:
        self._engine = engine
        self._notifier = notifier

    @activity.defn(name="sync_subscription")
    async def sync_subscription(self, req: SyncRequest) -> None:
        """One transaction, safe to repeat: versions guard the row, ids guard the events."""
        view = req.subscription
        now = datetime.now(UTC)
        notify: list[str] = []
        async with transaction(self._engine) as session:
            await subscriptions.upsert_view(session, view, now)
            await events.append(session, req.events, now)
            if self._notifier is not None and req.events:
                patterns = [ep.events for ep in await active_endpoints(session)]
                notify = [
                    e.id
                    for e in req.events
                    if e.type in EMAIL_TEMPLATES or any(wants(p, e.type) for p in patterns)
                ]
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
        if notify and self._notifier is not None:
            # After the commit, on every attempt: the notifier ignores ids it already has.
            await self._notifier.notify(view.id, notify)
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
