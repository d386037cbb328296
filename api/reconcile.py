"""Subscriptions whose workflow has closed while the read model says they go on.

A subscription ends through its workflow, which projects the end. A workflow closed any
other way — terminated from the Temporal UI or CLI, failed, timed out — leaves the read
model `active` and the customer entitled with nothing behind them (a cancel requested
through Temporal is handled by the workflow itself). `find` lists them from Temporal's
visibility store and the read model; `repair` records each as canceled, the way the
workflow would have: read model, `subscription.canceled` (actor `reconcile`), entitlements
revoked, open invoices voided.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from api.ids import new_id
from db.repositories import entitlements, invoices, subscriptions, test_clocks
from db.repositories.projection import write_projection
from domain.contracts import EntitlementGrant, EventDraft, SubscriptionView, SyncRequest
from workflows.messages import workflow_id_for

log = structlog.get_logger()

_PREFIX = workflow_id_for("")
_CLOSED = " OR ".join(
    f"ExecutionStatus = '{status}'"
    for status in ("Completed", "Failed", "Canceled", "Terminated", "TimedOut")
)
QUERY = f"WorkflowType = 'SubscriptionWorkflow' AND ({_CLOSED})"


@dataclass(frozen=True)
class Orphan:
    subscription_id: str
    read_model_status: str
    workflow_status: str


async def find(client: Client, session: AsyncSession, limit: int = 10_000) -> list[Orphan]:
    """Live subscriptions (in the read model) whose latest workflow run is closed. Ends the
    session's (read) transaction before asking Temporal about each."""
    closed: set[str] = set()
    async for execution in client.list_workflows(QUERY, limit=limit):
        if execution.id.startswith(_PREFIX):
            closed.add(execution.id.removeprefix(_PREFIX))
    live = await subscriptions.live_statuses(session, sorted(closed))
    await session.commit()
    orphans = []
    for subscription_id, status in sorted(live.items()):
        handle = client.get_workflow_handle(workflow_id_for(subscription_id))
        try:
            latest = (await handle.describe()).status
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            continue  # the visibility store knew a run the history service no longer has
        if latest is None or latest == WorkflowExecutionStatus.RUNNING:
            continue  # an earlier run closed (continued as new); the latest one runs
        orphans.append(Orphan(subscription_id, status, latest.name))
    return orphans


async def repair(session: AsyncSession, orphan: Orphan) -> None:
    """Record the subscription as canceled (in the caller's transaction)."""
    row = await subscriptions.get(session, orphan.subscription_id)
    if row is None:
        return
    written_at = now = datetime.now(UTC)
    if row.test_clock_id and (clock := await test_clocks.get(session, row.test_clock_id)):
        now = clock.frozen_time  # the subscription's own time, as its other events
    view = SubscriptionView.model_validate(row, from_attributes=True)
    view = view.model_copy(
        update={
            "status": "canceled",
            "canceled_at": now,
            "cancel_at_period_end": False,
            "pending_change": None,
            "state_version": view.state_version + 1,
        }
    )

    def event(type_: str, **data: object) -> EventDraft:
        return EventDraft(
            id=new_id("evt"),
            type=type_,
            subscription_id=view.id,
            customer_id=view.customer_id,
            occurred_at=now,
            data=data,
            actor="reconcile",
        )

    events = [
        event("subscription.canceled", reason=f"workflow_{orphan.workflow_status.lower()}"),
        *(
            event("entitlement.revoked", feature=feature)
            for feature in await entitlements.features_of(session, view.id)
        ),
    ]
    voided = {invoice_id: "void" for invoice_id in await invoices.open_ids(session, view.id)}
    request = SyncRequest(
        subscription=view,
        events=events,
        entitlements=EntitlementGrant(features=[], plan_id=view.plan_id),
        invoice_status=voided,
    )
    await write_projection(session, request, written_at)
    log.warning(
        "subscription.reconciled",
        subscription_id=view.id,
        was=orphan.read_model_status,
        workflow=orphan.workflow_status,
    )
