"""A subscription's items as the API shows them.

A workflow started before items reports none: its subscription has the one item the
migration gave it, quantity 1, with the id derived from the subscription id.
"""

from __future__ import annotations

from collections.abc import Sequence

from db.models import SubscriptionItem
from domain.contracts import ItemView, SubscriptionView
from domain.items import legacy_item_id


def with_items(
    view: SubscriptionView, rows: Sequence[SubscriptionItem] | None = None
) -> SubscriptionView:
    """`view` with its items: those it carries, else the stored `rows`, else the one item
    of a subscription from before items."""
    if view.items:
        return view
    if rows:
        items = [ItemView(id=r.id, plan_id=r.plan_id, quantity=r.quantity) for r in rows]
    else:
        items = [ItemView(id=legacy_item_id(view.id), plan_id=view.plan_id, quantity=1)]
    return view.model_copy(update={"items": items})
