"""Writing a projection of a subscription: read model, timeline, entitlements, invoice
statuses and the deliveries of new events, in the caller's transaction.

The projection activity writes every projection the workflow makes; the API writes the
first one of a subscription that starts with a trial (see `workflows/projection.py`).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from db.repositories import entitlements, events, invoices, outbox, subscriptions
from db.repositories.notifications import endpoint_filters
from domain.contracts import SyncRequest
from domain.notifications import targets_for


async def write_projection(
    session: AsyncSession, req: SyncRequest, now: datetime
) -> list[tuple[str, str, str]]:
    """Safe to repeat: versions guard the row, ids guard the events. Returns the deliveries
    queued (subscription, target, event id): only for events this call inserted, so a
    repeated call (a retried activity, a replayed task) queues nothing twice."""
    view = req.subscription
    await subscriptions.upsert_view(session, view, now)
    queued: list[tuple[str, str, str]] = []
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
    return queued
