"""How the API talks to subscription workflows: start, update, signal, advance test clocks."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import Principal
from api.errors import from_rpc_error
from api.ids import new_id
from config import Settings
from db.repositories import starts
from db.repositories.projection import write_projection
from domain import errors
from domain.contracts import PlanSnapshot, SubscriptionView
from domain.dunning import DunningPolicy, ExhaustedAction
from domain.errors import DomainError
from domain.plan_change import PlanChangePolicy
from workflows import search_attributes as sa
from workflows.details import next_billing_at
from workflows.messages import (
    ActorRequest,
    BillingPolicy,
    CarriedState,
    PaymentMethodChanged,
    SubscriptionInput,
    workflow_id_for,
)
from workflows.projection import trial_start
from workflows.subscription import SubscriptionWorkflow

log = structlog.get_logger()


def billing_policy(settings: Settings) -> BillingPolicy:
    return BillingPolicy(
        dunning=DunningPolicy(
            retry_schedule_hours=settings.dunning_retry_hours,
            exhausted_action=ExhaustedAction(settings.dunning_exhausted_action),
        ),
        plan_change=PlanChangePolicy(max_changes_per_period=settings.max_plan_changes_per_period),
        incomplete_expiry_hours=settings.incomplete_expiry_hours,
        trial_will_end_days=settings.trial_will_end_days,
        temporal_cancel_refund=settings.temporal_cancel_refund,
        usage_grace_seconds=settings.usage_grace_seconds,
    )


def _start_options(
    settings: Settings, inp: SubscriptionInput, state: CarriedState | None = None
) -> dict[str, Any]:
    """How the API starts a subscription's workflow: its id, queue, search attributes (as
    they are in `state`; `incomplete` until the workflow decides) and what the UI shows."""
    plan = inp.plan
    attributes: list[SearchAttributePair[Any]] = [
        SearchAttributePair(sa.CUSTOMER_ID, inp.customer_id),
        SearchAttributePair(sa.PLAN_ID, plan.plan_id),
        SearchAttributePair(sa.SUBSCRIPTION_STATUS, state.status if state else "incomplete"),
    ]
    if state is not None and (next_billing := next_billing_at(state)) is not None:
        attributes.append(SearchAttributePair(sa.NEXT_BILLING_AT, next_billing))
    if inp.test_clock_id:
        attributes.append(SearchAttributePair(sa.TEST_CLOCK_ID, inp.test_clock_id))
    return {
        "id": workflow_id_for(inp.subscription_id),
        "task_queue": settings.task_queue,
        "id_conflict_policy": WorkflowIDConflictPolicy.FAIL,
        "search_attributes": TypedSearchAttributes(attributes),
        # Only what never changes: plan, status and money are in the current details,
        # which every projection refreshes.
        "static_summary": f"{inp.subscription_id} of {inp.customer_id}",
        "static_details": (
            f"subscription `{inp.subscription_id}` of customer `{inp.customer_id}`"
            + (f" ({inp.customer_email})" if inp.customer_email else "")
            + (f"\n\ntest clock `{inp.test_clock_id}`" if inp.test_clock_id else "")
            + "\n\nplan, status, period and what is owed: current details"
        ),
    }


async def start_subscription(
    client: Client, settings: Settings, inp: SubscriptionInput
) -> SubscriptionView:
    """Start the workflow and wait (update-with-start) for its first decision: the first
    charge, which may fail."""
    start = WithStartWorkflowOperation(
        SubscriptionWorkflow.run, inp, **_start_options(settings, inp)
    )
    try:
        return await client.execute_update_with_start_workflow(
            SubscriptionWorkflow.initial_state, start_workflow_operation=start
        )
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        pass
    except RPCError as err:
        if not _transient(err):
            raise from_rpc_error(err) from err
    # The workflow may have started (and be charging) before the failure: answering with an
    # error would let the client create a second subscription. Ask for its first decision
    # as any update; only a workflow that never started makes this a plain failure.
    deadline = asyncio.get_running_loop().time() + settings.update_deadline_seconds
    try:
        view: SubscriptionView = await send_update(
            client, inp.subscription_id, SubscriptionWorkflow.initial_state, deadline=deadline
        )
    except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
        raise _unavailable(inp.subscription_id) from err
    return view


async def record_trial(
    session: AsyncSession, inp: SubscriptionInput, state: CarriedState
) -> tuple[SubscriptionView, SubscriptionInput]:
    """A trial decides nothing that can fail, so the API decides its first state itself:
    writes the projection and the start still to be made, in the caller's transaction.
    Returns the view, and the input to start the workflow with once that has committed (the
    workflow takes the state as a run that continues: it does not project it again)."""
    projection = trial_start(inp, state, state.created_at, new_id)
    now = datetime.now(UTC)
    await write_projection(session, projection, now)
    start_input = inp.model_copy(update={"carried": state})
    await starts.record(session, inp.subscription_id, start_input.model_dump(mode="json"), now)
    return projection.subscription, start_input


async def launch(client: Client, settings: Settings, start_input: SubscriptionInput) -> str | None:
    """Start the workflow of a recorded start; None when it runs (started now or before), else
    why Temporal would not start it (the record stays, for the start sweeper)."""
    try:
        await client.start_workflow(
            SubscriptionWorkflow.run,
            start_input,
            **_start_options(settings, start_input, start_input.carried),
        )
    except WorkflowAlreadyStartedError:
        return None  # started by the sweeper, or by an earlier try
    except RPCError as err:
        log.warning(
            "subscription.start_deferred",
            subscription_id=start_input.subscription_id,
            status=err.status.name,
        )
        return str(err) or err.status.name
    return None


# Failures after which the same update may be sent again: the server, the worker or the
# workflow task is (for now) not there to take it. Anything else is an answer.
_TRANSIENT = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNKNOWN,
    }
)
_RETRY_FIRST, _RETRY_MAX = 0.1, 5.0
# How long one try waits for the workflow's answer before it is sent again.
TRY_SECONDS = 30.0


def _transient(err: Exception) -> bool:
    if isinstance(err, WorkflowUpdateRPCTimeoutOrCancelledError):
        return True
    if isinstance(err, RPCError):
        # A workflow task that failed (its worker died mid-task) refuses updates until a
        # retried task succeeds.
        return err.status in _TRANSIENT or "Workflow Task in failed state" in err.message
    return False


def run_ended(err: RPCError) -> bool:
    """The workflow has ended (or never existed): no update can reach it."""
    return err.status == RPCStatusCode.NOT_FOUND or "already completed" in err.message


async def send_update(
    client: Client,
    subscription_id: str,
    update_fn: Any,
    *args: Any,
    deadline: float,
    result_type: Any = None,
    update_id: str | None = None,
) -> Any:
    """Send an update until the workflow answers, through transient failures, until the
    event-loop time `deadline`.

    Every try carries the same update id: an update the server already holds (accepted in
    history before a worker died) is not run twice but answered once it completes, and one
    that was lost with a workflow task is delivered again. Raises the last transient error
    when the deadline passes; other errors at once."""
    handle = client.get_workflow_handle(workflow_id_for(subscription_id))
    update_id = update_id or str(uuid.uuid4())
    loop = asyncio.get_running_loop()
    delay = _RETRY_FIRST
    while True:
        remaining = deadline - loop.time()
        try:
            return await handle.execute_update(
                update_fn,
                args=args,
                id=update_id,
                result_type=result_type,
                rpc_timeout=timedelta(seconds=max(1.0, min(remaining, TRY_SECONDS))),
            )
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
            if not _transient(err) or loop.time() + delay > deadline:
                raise
            log.warning(
                "workflow.update_retried",
                subscription_id=subscription_id,
                update_id=update_id,
                error=type(err).__name__,
                status=err.status.name if isinstance(err, RPCError) else None,
                retry_in=delay,
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RETRY_MAX)


async def update(
    client: Client,
    settings: Settings,
    subscription_id: str,
    update_fn: Any,
    arg: Any,
    result_type: Any = None,
    update_id: str | None = None,
) -> Any:
    """Run a workflow update for a request; rejections become API errors via the app's
    handlers, a workflow that cannot be reached in time a 503."""
    deadline = asyncio.get_running_loop().time() + settings.update_deadline_seconds
    try:
        return await send_update(
            client,
            subscription_id,
            update_fn,
            arg,
            deadline=deadline,
            result_type=result_type,
            update_id=update_id,
        )
    except WorkflowUpdateRPCTimeoutOrCancelledError as err:
        raise _unavailable(subscription_id) from err
    except RPCError as err:
        if _transient(err):
            raise _unavailable(subscription_id) from err
        raise from_rpc_error(err) from err


@dataclass(frozen=True)
class LifecycleCalls:
    """What a lifecycle request needs to send its workflow update (`api.deps.LifecycleDep`).

    With an `Idempotency-Key`, the key (per API key and operation) is the update's id: a
    request sent again after a timeout is the same update, and Temporal answers it with the
    first one's outcome instead of running it twice."""

    client: Client
    settings: Settings
    idempotency_key: str | None

    async def update(
        self,
        principal: Principal,
        subscription_id: str,
        update_fn: Any,
        arg: Any,
        result_type: Any = None,
    ) -> Any:
        key = self.idempotency_key
        if key is not None and not 1 <= len(key) <= 255:
            raise errors.INVALID_IDEMPOTENCY_KEY("Idempotency-Key must be 1-255 characters")
        update_id = f"{update_fn.__name__}:{principal.key_id}:{key}" if key is not None else None
        return await update(
            self.client,
            self.settings,
            subscription_id,
            update_fn,
            arg,
            result_type,
            update_id=update_id,
        )

    async def by(self, principal: Principal, subscription_id: str, update_fn: Any) -> Any:
        """An update whose request is only who asked for it."""
        request = ActorRequest(actor=principal.actor)
        return await self.update(principal, subscription_id, update_fn, request)


def _unavailable(subscription_id: str) -> DomainError:
    return errors.WORKFLOW_UNAVAILABLE(
        f"{subscription_id}'s workflow did not answer in time; the request may still "
        "complete: read the subscription before sending it again"
    )


async def signal_payment_method(
    client: Client, subscription_id: str, payment_method: str, actor: str
) -> None:
    handle = client.get_workflow_handle(workflow_id_for(subscription_id))
    try:
        await handle.signal(
            SubscriptionWorkflow.payment_method_changed,
            PaymentMethodChanged(payment_method=payment_method, actor=actor),
        )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise


def plan_snapshot(plan: Any) -> PlanSnapshot:
    return PlanSnapshot(
        plan_id=plan.id,
        name=plan.name,
        amount=plan.amount,
        currency=plan.currency,
        interval=plan.interval,
        interval_count=plan.interval_count,
        features=list(plan.features),
        trial_days=plan.trial_days,
        meter_id=plan.meter_id if plan.usage_type == "metered" else None,
        package_size=plan.package_size,
    )
