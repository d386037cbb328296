"""Subscriptions: create, read, and every lifecycle operation (each a workflow update)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api import lifecycle, subscription_items
from api.change_result import change_out
from api.deps import (
    CurrentKey,
    LifecycleDep,
    ProductKey,
    ProductOrSupportKey,
    SessionDep,
    SettingsDep,
    StartsDep,
    SupportKey,
    TemporalDep,
)
from api.errors import not_found
from api.idempotency import IdempotencyDep
from api.ids import new_id
from api.items_view import with_items
from api.schemas import CancelIn, ChangePlanIn, ExtendTrialIn, PauseIn, SubscriptionCreate
from api.services import coupons as coupon_service
from api.services.subscriptions import launch_trial
from db.models import SubscriptionItem
from db.repositories import items as items_repo
from db.repositories import plans
from db.repositories import subscriptions as repo
from domain import errors
from domain.contracts import ChargeOutcome, SubscriptionView
from domain.items import Item
from domain.periods import Interval, interval_months
from domain.status import TERMINAL
from domain.status import SubscriptionStatus as S
from workflows.messages import (
    CancelRequest,
    ChangePlanRequest,
    ChangePlanResult,
    ExtendTrialRequest,
    PauseRequest,
    SubscriptionInput,
)
from workflows.projection import initial_state
from workflows.subscription import SubscriptionWorkflow

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])

STATUSES = frozenset(s.value for s in S)


def _out(view: SubscriptionView, items: Sequence[SubscriptionItem] | None = None) -> dict[str, Any]:
    return with_items(view, items).model_dump(mode="json", exclude={"state_version"})


@router.post("", status_code=201)
async def create_subscription(
    request: Request,
    body: SubscriptionCreate,
    idem: IdempotencyDep,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    starts: StartsDep,
    key: ProductKey,
) -> object:
    """Start the subscription; answers after the first charge (or trial start) is decided."""
    if (replay := await idem.replay()) is not None:
        return replay
    specs = body.item_specs()
    customer, plan, clock = await repo.subscribing(
        session, body.customer_id, specs[0][0], body.test_clock_id
    )
    if customer is None:
        raise not_found("customer", body.customer_id)
    if plan is None:
        raise not_found("plan", specs[0][0])
    now = datetime.now(UTC)
    if body.test_clock_id is not None:
        if not settings.sandbox:
            raise errors.TEST_CLOCKS_DISABLED("Test clocks exist only when RECUR_SANDBOX=true")
        if clock is None:
            raise not_found("test clock", body.test_clock_id)
        now = clock.frozen_time
    anchor = body.billing_cycle_anchor
    if anchor is not None:
        anchor = anchor.astimezone(UTC)
        horizon = timedelta(days=31 * interval_months(Interval(plan.interval), plan.interval_count))
        if not now <= anchor <= now + horizon:
            raise errors.INVALID_BILLING_CYCLE_ANCHOR(
                "billing_cycle_anchor must be between now and one period ahead"
            )
    snapshot = lifecycle.plan_snapshot(plan)
    if specs == [(plan.id, None)]:
        items = [Item(id=new_id("si"), plan=snapshot)]
    else:
        items = await subscription_items.resolve(session, specs)
        # The subscription's plan is its first licensed item's (its first item's if all
        # are metered).
        snapshot = next((i.plan for i in items if not i.plan.metered), items[0].plan)
    inp = SubscriptionInput(
        subscription_id=new_id("sub"),
        customer_id=customer.id,
        plan=snapshot,
        items=items,
        trial_days=body.trial_days,
        test_clock_id=body.test_clock_id,
        clock_now=now if body.test_clock_id else None,
        billing_cycle_anchor=anchor,
        has_payment_method=customer.default_payment_method is not None,
        actor=key.actor,
        customer_email=customer.email,
        policy=lifecycle.billing_policy(settings),
    )
    state = initial_state(inp, now)
    trial = state.status == S.TRIALING
    redemption = None
    if body.coupon_id is not None or body.promotion_code is not None:
        # Counted now: with a trial it commits with the subscription below; without, it is
        # reserved until the workflow has decided the first charge.
        redemption = await coupon_service.redeem_for(
            session, body.coupon_id, body.promotion_code, inp, now, trial=trial
        )
        inp = inp.model_copy(update={"discount": redemption.grant})
        state = initial_state(inp, now)
    if not trial:
        sessions = request.app.state.sessions
        async with coupon_service.kept_if_applied(sessions, session, redemption):
            view = await lifecycle.start_subscription(temporal, settings, inp)
        return await idem.respond(201, _out(view))
    # A trial: the subscription, its first state, the start to make (and the answer, under an
    # Idempotency-Key) commit together; the workflow is started after, here or (if Temporal
    # cannot be reached) by the sweeper.
    view, start_input = await lifecycle.record_trial(session, inp, state)
    response = await idem.respond(201, _out(view))
    await launch_trial(session, temporal, settings, starts, start_input)
    return response


@router.get("")
async def list_subscriptions(
    session: SessionDep,
    _: CurrentKey,
    customer_id: str | None = None,
    status: str | None = None,
    plan_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    if status is not None and status not in STATUSES:
        raise errors.VALIDATION_ERROR(f"status must be one of {sorted(STATUSES)}")
    rows = await repo.list_filtered(
        session, customer_id=customer_id, status=status, plan_id=plan_id, limit=limit
    )
    items = await items_repo.items_of(session, [r.id for r in rows])
    return [_row_out(r, items.get(r.id)) for r in rows]


@router.get("/{subscription_id}")
async def get_subscription(
    subscription_id: str, session: SessionDep, _: CurrentKey
) -> dict[str, Any]:
    row = await repo.get(session, subscription_id)
    if row is None:
        raise not_found("subscription", subscription_id)
    items = await items_repo.items_of(session, [row.id])
    return _row_out(row, items.get(row.id))


def _row_out(row: Any, items: Sequence[SubscriptionItem] | None) -> dict[str, Any]:
    return _out(SubscriptionView.model_validate(row, from_attributes=True), items)


async def _require(session: SessionDep, subscription_id: str) -> None:
    """The subscription exists and its lifecycle is still running (it can take updates)."""
    row = await repo.get(session, subscription_id)
    if row is None:
        raise not_found("subscription", subscription_id)
    if row.status in TERMINAL:
        raise errors.SUBSCRIPTION_CANCELED(f"Subscription {subscription_id} is {row.status}")


@router.post("/{subscription_id}/change_plan")
async def change_plan(
    subscription_id: str,
    body: ChangePlanIn,
    session: SessionDep,
    calls: LifecycleDep,
    key: ProductKey,
) -> dict[str, Any]:
    """Upgrade, downgrade or switch interval; `preview` answers without changing anything."""
    await _require(session, subscription_id)
    plan = await plans.get(session, body.plan_id)
    if plan is None:
        raise not_found("plan", body.plan_id)
    req = ChangePlanRequest(
        plan=lifecycle.plan_snapshot(plan),
        when=body.when,
        proration=body.proration,
        preview=body.preview,
        actor=key.actor,
    )
    result: ChangePlanResult = await calls.update(
        key, subscription_id, SubscriptionWorkflow.change_plan, req
    )
    return await change_out(session, result)


@router.post("/{subscription_id}/cancel")
async def cancel(
    subscription_id: str,
    session: SessionDep,
    calls: LifecycleDep,
    key: ProductOrSupportKey,
    body: CancelIn | None = None,
) -> dict[str, Any]:
    await _require(session, subscription_id)
    body = body or CancelIn()
    req = CancelRequest(at_period_end=body.at_period_end, refund=body.refund, actor=key.actor)
    return _out(await calls.update(key, subscription_id, SubscriptionWorkflow.cancel, req))


@router.post("/{subscription_id}/reactivate")
async def reactivate(
    subscription_id: str,
    session: SessionDep,
    calls: LifecycleDep,
    key: ProductKey,
) -> dict[str, Any]:
    await _require(session, subscription_id)
    view = await calls.by(key, subscription_id, SubscriptionWorkflow.reactivate)
    return _out(view)


@router.post("/{subscription_id}/pause")
async def pause(
    subscription_id: str,
    session: SessionDep,
    calls: LifecycleDep,
    key: ProductKey,
    body: PauseIn | None = None,
) -> dict[str, Any]:
    await _require(session, subscription_id)
    resumes_at = body.resumes_at.astimezone(UTC) if body and body.resumes_at else None
    req = PauseRequest(resumes_at=resumes_at, actor=key.actor)
    return _out(await calls.update(key, subscription_id, SubscriptionWorkflow.pause, req))


@router.post("/{subscription_id}/resume")
async def resume(
    subscription_id: str,
    session: SessionDep,
    calls: LifecycleDep,
    key: ProductKey,
) -> dict[str, Any]:
    await _require(session, subscription_id)
    view = await calls.by(key, subscription_id, SubscriptionWorkflow.resume)
    return _out(view)


@router.post("/{subscription_id}/retry_payment")
async def retry_payment(
    subscription_id: str,
    session: SessionDep,
    calls: LifecycleDep,
    key: SupportKey,
) -> dict[str, Any]:
    """Support: one payment attempt now; answers with its outcome."""
    await _require(session, subscription_id)
    outcome: ChargeOutcome = await calls.by(
        key, subscription_id, SubscriptionWorkflow.retry_payment
    )
    return outcome.model_dump(mode="json")


@router.post("/{subscription_id}/extend_trial")
async def extend_trial(
    subscription_id: str,
    body: ExtendTrialIn,
    session: SessionDep,
    calls: LifecycleDep,
    key: SupportKey,
) -> dict[str, Any]:
    await _require(session, subscription_id)
    req = ExtendTrialRequest(trial_end=body.trial_end.astimezone(UTC), actor=key.actor)
    return _out(
        await calls.update(
            key,
            subscription_id,
            SubscriptionWorkflow.extend_trial,
            req,
        )
    )
