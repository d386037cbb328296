"""How the API talks to subscription workflows: start, update, signal, advance test clocks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ApiError, from_rpc_error
from api.ids import new_id
from config import Settings
from db.projection import write_projection
from db.repositories import starts
from domain.contracts import PlanSnapshot, SubscriptionView
from domain.dunning import DunningPolicy, ExhaustedAction
from domain.money import format_amount
from domain.plan_change import PlanChangePolicy
from workflows import search_attributes as sa
from workflows.details import next_billing_at
from workflows.messages import (
    AdvanceClock,
    AdvanceResult,
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
        "static_summary": f"{inp.subscription_id}: {plan.name} for {inp.customer_id}",
        "static_details": (
            f"**{plan.name}** (`{plan.plan_id}`), "
            f"{format_amount(plan.amount, plan.currency)} every "
            f"{plan.interval_count} {plan.interval.value}(s)\n\ncustomer `{inp.customer_id}`"
            + (f"\n\ntest clock `{inp.test_clock_id}`" if inp.test_clock_id else "")
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
    except RPCError as err:
        raise from_rpc_error(err) from err


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


async def update(
    client: Client, subscription_id: str, update_fn: Any, arg: Any, result_type: Any = None
) -> Any:
    """Run a workflow update; rejections become API errors via the app's handlers."""
    handle = client.get_workflow_handle(workflow_id_for(subscription_id))
    try:
        return await handle.execute_update(update_fn, arg, result_type=result_type)
    except RPCError as err:
        raise from_rpc_error(err) from err


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


async def advance_subscription(
    client: Client, subscription_id: str, to: datetime
) -> AdvanceResult | None:
    """Advance one subscription's clock and wait until it has caught up (None: it has ended).

    A run that continues as new mid-advance answers `caught_up=False`; the next run
    (same workflow id) gets the same request until it has done everything due.
    """
    handle = client.get_workflow_handle(workflow_id_for(subscription_id))
    for _ in range(10_000):
        try:
            result: AdvanceResult = await handle.execute_update(
                SubscriptionWorkflow.advance_clock, AdvanceClock(to=to)
            )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND or "already completed" in err.message:
                return None
            raise
        except WorkflowUpdateFailedError as err:
            raise ApiError(409, "advance_failed", f"{subscription_id}: {err.cause}") from err
        if result.caught_up:
            return result
        await asyncio.sleep(0.01)
    raise ApiError(409, "advance_failed", f"{subscription_id} did not catch up")


async def advance_all(
    client: Client, subscription_ids: list[str], to: datetime, concurrency: int = 64
) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(subscription_id: str) -> None:
        async with gate:
            await advance_subscription(client, subscription_id, to)

    await asyncio.gather(*(one(s) for s in subscription_ids))


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
    )
