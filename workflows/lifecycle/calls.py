"""What a lifecycle step asks of Temporal: the charge, refund and projection activities,
and the Temporal-side details for operators. `Subscription` (context.py) is one of these:
the split keeps each module small; the attributes below are set by its constructor.

Side effects happen only in activities, referenced by their functions; the charge and the
projection run as local activities: both are idempotent (the charge records its
idempotency key in PostgreSQL before Stripe is called), so the worker may run them again
after a crash, and a renewal costs one workflow task instead of a round trip through the
server for each activity.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

from domain.contracts import (
    ChargeOutcome,
    ChargeRequest,
    EventDraft,
    InvoiceDraft,
    RefundOutcome,
    RefundRequest,
    SyncRequest,
)
from workflows.clock import WorkflowClock
from workflows.details import changed_only, current_details, search_attribute_updates
from workflows.messages import CarriedState, SubscriptionInput
from workflows.patches import (
    CANCEL_REQUEST_CANCELS,
    DURABLE_UPDATE_CHARGES,
    LEAN_RENEWALS,
    SEARCH_ATTRIBUTES_ON_CHANGE,
    RunPatches,
)
from workflows.projection import sync_request

with workflow.unsafe.imports_passed_through():
    from activities.ledger import LedgerActivities
    from activities.payments import PaymentActivities

A = TypeVar("A")
R = TypeVar("R")


# Charges retry transient failures (network, rate limits, 5xx) with backoff; card
# declines come back as a normal "failed" outcome, not as an activity failure.
CHARGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
SYNC_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=30)
)


class ActivityCalls:
    """The activity calls and Temporal details of one run's subscription."""

    inp: SubscriptionInput
    clock: WorkflowClock
    state: CarriedState
    patches: RunPatches
    update_not_durable: bool
    cancel_requested: bool
    pending_events: list[EventDraft]

    def new_id(self, prefix: str) -> str:
        raise NotImplementedError

    async def charge(
        self,
        invoice: InvoiceDraft,
        attempt: int,
        actor: str | None = None,
        on_paid: SyncRequest | None = None,
    ) -> ChargeOutcome:
        await self._make_updates_durable()
        request = ChargeRequest(
            invoice=invoice,
            attempt_number=attempt,
            actor=actor,
            on_paid=on_paid,
            clock_time=self.clock.now() if self.clock.is_test_clock else None,
        )
        outcome = await self._to_the_end(
            self._start(
                PaymentActivities.charge_invoice,
                request,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(hours=6),
                retry_policy=CHARGE_RETRY,
                summary=(
                    f"charge {invoice.id} attempt {attempt}: {invoice.total} {invoice.currency}"
                ),
            )
        )
        self.state.latest_invoice_id = invoice.id
        return outcome

    async def refund(self, request: RefundRequest) -> RefundOutcome:
        return await workflow.execute_activity_method(
            PaymentActivities.refund_invoice,
            request,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=CHARGE_RETRY,
            summary=f"refund {request.amount} {self.state.plan.currency} of {request.invoice_id}",
        )

    async def sync(
        self,
        events: list[EventDraft],
        *,
        features: list[str] | None = None,
        invoice_status: dict[str, str] | None = None,
    ) -> None:
        """Project state to PostgreSQL (read model, timeline, entitlements) and to Temporal."""
        request = sync_request(
            self.inp,
            self.state,
            [*events, *self.pending_events],
            self.clock.now(),
            self.new_id,
            features=features,
            invoice_status=invoice_status,
        )
        self.pending_events = []
        await self.project(request)

    async def project(self, request: SyncRequest) -> None:
        await self._to_the_end(
            self._start(
                LedgerActivities.sync_subscription,
                request,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=SYNC_RETRY,
                summary=", ".join(e.type for e in request.events) or "state",
            )
        )
        self.publish()

    # ------------------------------------------------------------------ patched behaviour
    # The branches on patches of what every step does; the others are `charge_opening`
    # above and three in workflows/subscription.py (listed in workflows/patches.py).

    def _start(
        self,
        activity: Callable[[Any, A], Awaitable[R]],
        arg: A,
        *,
        start_to_close_timeout: timedelta,
        retry_policy: RetryPolicy,
        summary: str,
        schedule_to_close_timeout: timedelta | None = None,
    ) -> workflow.ActivityHandle[R]:
        """A local activity; runs recorded before LEAN_RENEWALS call a (remote) activity."""
        if self.patches.use(LEAN_RENEWALS):
            return workflow.start_local_activity_method(
                activity,
                arg,
                start_to_close_timeout=start_to_close_timeout,
                schedule_to_close_timeout=schedule_to_close_timeout,
                retry_policy=retry_policy,
                summary=summary,
            )
        return workflow.start_activity_method(
            activity,
            arg,
            start_to_close_timeout=start_to_close_timeout,
            schedule_to_close_timeout=schedule_to_close_timeout,
            retry_policy=retry_policy,
            summary=summary,
        )

    async def _make_updates_durable(self) -> None:
        """Before money moves because of an update, let that update reach history.

        The charge is a local activity: it runs inside the workflow task, and an update
        delivered in that task is written to history (accepted) only when the task
        completes. A worker that died between Stripe's answer and the task's completion
        lost the update and the reason for the charge with it. A short timer completes the
        task first; from then on the update is durable, and a crash after the charge
        replays it and charges again with the same idempotency key: charged once, applied
        once. Timer-driven steps (renewals on real time, dunning retries) need none: their
        timer is already in history."""
        if not self.update_not_durable:
            return
        self.update_not_durable = False
        if self.patches.use(DURABLE_UPDATE_CHARGES):
            await workflow.sleep(timedelta(milliseconds=1))

    async def _to_the_end(self, activity: Awaitable[R]) -> R:
        """Await an activity that moves money or writes records; a cancel requested through
        Temporal meanwhile lets it finish (a charge cut short could leave money taken and
        nothing recorded) and is acted on as the next step."""
        if not self.patches.use(CANCEL_REQUEST_CANCELS):
            return await activity
        try:
            return await asyncio.shield(activity)
        except asyncio.CancelledError:
            self.cancel_requested = True
            return await activity

    def publish(self) -> None:
        """Search attributes and current details, for operators in the Temporal UI."""
        updates = search_attribute_updates(self.state)
        if self.patches.use(SEARCH_ATTRIBUTES_ON_CHANGE):
            updates = changed_only(updates, workflow.info().typed_search_attributes)
        if updates:
            workflow.upsert_search_attributes(updates)
        workflow.set_current_details(current_details(self.inp, self.state, self.clock.now()))
