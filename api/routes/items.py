"""Changing a subscription's items (seats, add-ons): the new full set, now or at the period
end, with a preview that changes nothing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api import subscription_items
from api.change_result import change_out
from api.deps import LifecycleDep, ProductKey, SessionDep
from api.errors import not_found
from api.schemas import UpdateItemsIn
from db.repositories import subscriptions as repo
from domain import errors
from domain.status import TERMINAL
from workflows.messages import ChangePlanResult, UpdateItemsRequest
from workflows.subscription import SubscriptionWorkflow

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


@router.post("/{subscription_id}/update_items")
async def update_items(
    subscription_id: str,
    body: UpdateItemsIn,
    session: SessionDep,
    calls: LifecycleDep,
    key: ProductKey,
) -> dict[str, Any]:
    """The new full set of items: a higher recurring total applies now and is invoiced at
    once; a lower one waits for the period end unless `when: now` (its net credit goes to
    the customer's balance); `preview` answers without changing anything."""
    row = await repo.get(session, subscription_id)
    if row is None:
        raise not_found("subscription", subscription_id)
    if row.status in TERMINAL:
        raise errors.SUBSCRIPTION_CANCELED(f"Subscription {subscription_id} is {row.status}")
    items = await subscription_items.resolve(
        session, [(item.plan_id, item.quantity) for item in body.items]
    )
    req = UpdateItemsRequest(
        items=items,
        when=body.when,
        proration=body.proration,
        preview=body.preview,
        actor=key.actor,
    )
    result: ChangePlanResult = await calls.update(
        key, subscription_id, SubscriptionWorkflow.update_items, req
    )
    return await change_out(session, result)
