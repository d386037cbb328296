"""A subscription's discount: redeem a coupon or promotion code on it (replacing the one it
holds), or remove it. Each is a workflow update; the redemption is counted first and kept
only if the workflow applies it (`api.services.coupons`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.coupon_schemas import DiscountIn
from api.deps import LifecycleDep, ProductKey, SessionDep
from api.errors import not_found
from api.idempotency import IdempotencyDep
from api.services import coupons as coupon_service
from db.models import Subscription
from db.repositories import subscriptions as repo
from domain import errors
from domain.contracts import SubscriptionView
from domain.status import TERMINAL
from workflows.messages import SetDiscountRequest
from workflows.subscription import SubscriptionWorkflow

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


@router.post("/{subscription_id}/discount")
async def set_discount(
    http: Request,
    subscription_id: str,
    body: DiscountIn,
    idem: IdempotencyDep,
    session: SessionDep,
    calls: LifecycleDep,
    key: ProductKey,
) -> object:
    """Redeem a coupon or promotion code on the subscription; it replaces the discount the
    subscription holds, from now (the next invoices follow it; nothing is prorated).

    An `Idempotency-Key` replays the answer, and names the redemption and the workflow
    update: a request sent again after a timeout neither counts a second redemption nor
    applies the discount twice."""
    if (replay := await idem.replay()) is not None:
        return replay
    row = await _running(session, subscription_id)
    redemption = await coupon_service.redeem_on(
        session,
        row,
        coupon_id=body.coupon_id,
        promotion_code=body.promotion_code,
        idempotency=(key.key_id, idem.key),
    )
    request = SetDiscountRequest(grant=redemption.grant, actor=key.actor)
    async with coupon_service.kept_if_applied(http.app.state.sessions, session, redemption):
        view = await calls.update(key, subscription_id, SubscriptionWorkflow.set_discount, request)
    return await idem.respond(200, _out(view))


@router.delete("/{subscription_id}/discount")
async def remove_discount(
    subscription_id: str, session: SessionDep, calls: LifecycleDep, key: ProductKey
) -> dict[str, Any]:
    """The subscription no longer holds a discount; the next invoices are at full price."""
    await _running(session, subscription_id)
    view = await calls.by(key, subscription_id, SubscriptionWorkflow.remove_discount)
    return _out(view)


async def _running(session: SessionDep, subscription_id: str) -> Subscription:
    row = await repo.get(session, subscription_id)
    if row is None:
        raise not_found("subscription", subscription_id)
    if row.status in TERMINAL:
        raise errors.SUBSCRIPTION_CANCELED(f"Subscription {subscription_id} is {row.status}")
    return row


def _out(view: SubscriptionView) -> dict[str, Any]:
    return view.model_dump(mode="json", exclude={"state_version"})
