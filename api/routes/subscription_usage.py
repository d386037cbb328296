"""A subscription's usage in its current period: one line per metered plan, priced as its
invoice will price it (`ceil(quantity / package_size) * amount`; 0 during a free trial,
whose usage is never billed), from the running aggregate (no raw events read)."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter

from api.deps import CurrentKey, SessionDep
from api.errors import not_found
from api.usage_schemas import UsageLine
from db.repositories import usage
from domain.status import SubscriptionStatus
from domain.usage import as_number, usage_amount

router = APIRouter(prefix="/v1/subscriptions", tags=["usage"])


@router.get("/{subscription_id}/usage", response_model=list[UsageLine])
async def current_usage(subscription_id: str, session: SessionDep, _: CurrentKey) -> object:
    rows = await usage.current_usage(session, subscription_id)
    if not rows:
        raise not_found("subscription", subscription_id)
    lines = []
    for row in rows:
        if row["plan_id"] is None or row["current_period_start"] is None:
            continue
        quantity = row["quantity"] if row["quantity"] is not None else Decimal(0)
        free = row["status"] == SubscriptionStatus.TRIALING
        lines.append(
            UsageLine(
                meter_id=row["meter_id"],
                plan_id=row["plan_id"],
                period_start=row["period_start"] or row["current_period_start"],
                period_end=row["current_period_end"],
                quantity=as_number(quantity),
                amount=0 if free else usage_amount(quantity, row["package_size"], row["amount"]),
            )
        )
    return lines
