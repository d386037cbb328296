"""The items a subscription request asks for, resolved to plan snapshots and validated."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from api import lifecycle
from api.errors import not_found
from api.ids import new_id
from db.repositories import items as items_repo
from domain import errors
from domain.items import Item, check_items


async def resolve(session: AsyncSession, specs: Sequence[tuple[str, int | None]]) -> list[Item]:
    """Items for (plan_id, quantity) pairs (None: not given, 1), each with a new `si_` id:
    404 for a plan that does not exist, 422 for a set that is not one (`invalid_items`,
    also for a quantity given to a metered plan, `currency_mismatch`, `interval_mismatch`)."""
    found = await items_repo.plans(session, [plan_id for plan_id, _ in specs])
    for plan_id, quantity in specs:
        if plan_id not in found:
            raise not_found("plan", plan_id)
        if quantity is not None and found[plan_id].usage_type == "metered":
            raise errors.INVALID_ITEMS(
                f"Plan {plan_id} is metered: it bills its usage and takes no quantity"
            )
    items = [
        Item(id=new_id("si"), plan=lifecycle.plan_snapshot(found[plan_id]), quantity=quantity or 1)
        for plan_id, quantity in specs
    ]
    check_items([(item.plan, item.quantity) for item in items])
    return items
