"""Subscription items: several plans per subscription, each bought in a quantity (seats).

Pure arithmetic on item sets: validating a set, its recurring total, the invoice lines of a
period, the per-item proration of a change and whether a change raises or lowers the total.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from domain import errors
from domain._time import as_utc
from domain.contracts import PlanSnapshot
from domain.invoices import InvoiceLine, LineKind
from domain.periods import interval_months, period_containing
from domain.plan_change import ChangeKind
from domain.proration import prorate

MAX_ITEMS = 20
MAX_QUANTITY = 10_000

# The multiplication sign and en dash of "3 x Insider, Jun 1 - Jul 1 2025", as escapes.
TIMES = "\u00d7"
EN_DASH = "\u2013"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Item(BaseModel):
    """One plan of a subscription, in a quantity; `id` is the item's `si_` id."""

    model_config = ConfigDict(frozen=True)

    id: str
    plan: PlanSnapshot
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY, strict=True)] = 1

    @property
    def total(self) -> int:
        """What the item costs per period up front, in minor units: a metered item bills its
        usage in arrears instead, so it has no up-front price (and nothing to prorate)."""
        if self.plan.metered:
            return 0
        return self.plan.amount * self.quantity


# An item's total per period as proration prices it (after a percent discount that is
# active); None: `Item.total`.
ItemPrice = Callable[[Item], int]


def _priced(item: Item, price: ItemPrice | None) -> int:
    return item.total if price is None else price(item)


def legacy_item_id(subscription_id: str) -> str:
    """The id of the one item of a subscription created before items existed: the migration
    (0009_items_and_balance) and the subscription's workflow both derive it from the
    subscription id."""
    digest = hashlib.md5(subscription_id.encode(), usedforsecurity=False).hexdigest()
    return f"si_{digest[:24]}"


def check_items(items: Sequence[tuple[PlanSnapshot, int]]) -> None:
    """An item set a subscription may have: 1-20 items of distinct plans, each quantity
    1-10,000, at most one metered item per meter, one currency and one billing period
    (interval and interval_count)."""
    if not 1 <= len(items) <= MAX_ITEMS:
        raise errors.INVALID_ITEMS(f"A subscription has 1 to {MAX_ITEMS} items, not {len(items)}")
    seen: set[str] = set()
    # Usage is aggregated per (subscription, meter, period): two metered items on one meter
    # would each bill the whole quantity.
    metering: dict[str, str] = {}
    for plan, quantity in items:
        if plan.plan_id in seen:
            raise errors.INVALID_ITEMS(f"Plan {plan.plan_id} is listed twice")
        seen.add(plan.plan_id)
        if plan.meter_id is not None:
            if (other := metering.get(plan.meter_id)) is not None:
                raise errors.INVALID_ITEMS(
                    f"Plans {other} and {plan.plan_id} share meter {plan.meter_id}: a "
                    "subscription has at most one metered item per meter"
                )
            metering[plan.meter_id] = plan.plan_id
        if isinstance(quantity, bool) or not 1 <= quantity <= MAX_QUANTITY:
            raise errors.INVALID_ITEMS(
                f"Quantity of {plan.plan_id} must be 1 to {MAX_QUANTITY}, not {quantity}"
            )
    first = items[0][0]
    for plan, _ in items[1:]:
        if plan.currency != first.currency:
            raise errors.CURRENCY_MISMATCH(
                f"All items bill in one currency: {first.plan_id} is {first.currency}, "
                f"{plan.plan_id} is {plan.currency}"
            )
        if (plan.interval, plan.interval_count) != (first.interval, first.interval_count):
            raise errors.INTERVAL_MISMATCH(
                f"All items bill on one period: {first.plan_id} every "
                f"{first.interval_count} {first.interval.value}, {plan.plan_id} every "
                f"{plan.interval_count} {plan.interval.value}"
            )


def item_terms(items: Sequence[Item]) -> list[tuple[PlanSnapshot, int]]:
    """The (plan, quantity) pairs `check_items` validates."""
    return [(item.plan, item.quantity) for item in items]


def recurring_total(items: Sequence[Item]) -> int:
    """The set's price per period, in minor units."""
    return sum(item.total for item in items)


def period_range(start: datetime, end: datetime) -> str:
    """A period as a customer reads it: "Jun 1 - Jul 1 2025" or "Dec 15 2025 - Jan 15 2026"
    (with an en dash)."""
    first, last = as_utc(start, "start"), as_utc(end, "end")
    head = f"{_MONTHS[first.month - 1]} {first.day}"
    if first.year != last.year:
        head = f"{head} {first.year}"
    return f"{head} {EN_DASH} {_MONTHS[last.month - 1]} {last.day} {last.year}"


def item_label(name: str, quantity: int) -> str:
    """A quantity and plan name, "3 x Insider" (with a multiplication sign); a single unit
    is just the plan's name."""
    return name if quantity == 1 else f"{quantity} {TIMES} {name}"


def period_lines(items: Sequence[Item], start: datetime, end: datetime) -> list[InvoiceLine]:
    """One `subscription` line per licensed item for the period [start, end)."""
    span = period_range(start, end)
    return [
        InvoiceLine(
            kind=LineKind.SUBSCRIPTION,
            description=f"{item_label(item.plan.name, item.quantity)}, {span}",
            amount=item.total,
            period_start=start,
            period_end=end,
            plan_id=item.plan.plan_id,
        )
        for item in items
        if not item.plan.metered
    ]


def partial_period_lines(
    items: Sequence[Item],
    anchor: datetime,
    start: datetime,
    end: datetime,
    price: ItemPrice | None = None,
) -> list[InvoiceLine]:
    """A first period shorter than a full one (a future billing anchor), each item charged
    pro rata: `round(total x (end - start) / full period)`, as a `proration` line (its total
    as `price` gives it: a proration gets no discount line of its own)."""
    plan = items[0].plan
    full_start, full_end = period_containing(anchor, plan.interval, plan.interval_count, start)
    if full_end != end:
        raise ValueError("partial period must end on the anchor boundary")
    span = period_range(start, end)
    lines: list[InvoiceLine] = []
    for item in items:
        if item.plan.metered:
            continue
        amount = prorate(0, _priced(item, price), full_start, full_end, start).debit
        label = item_label(item.plan.name, item.quantity)
        lines.append(_proration(f"{label}, {span}", amount, start, end, item.plan.plan_id))
    return lines


def opening_lines(
    items: Sequence[Item], anchor: datetime, start: datetime, price: ItemPrice | None = None
) -> tuple[list[InvoiceLine], datetime]:
    """The lines of the period starting at `start` and its end: full prices when `start` is
    on an anchor boundary, pro rata up to the next boundary otherwise."""
    plan = items[0].plan
    full_start, end = period_containing(anchor, plan.interval, plan.interval_count, start)
    if full_start == start:
        return period_lines(items, start, end), end
    return partial_period_lines(items, anchor, start, end, price), end


def features_of(items: Sequence[Item]) -> list[str]:
    """What the items entitle to: the union of their plans' features, in first-seen order."""
    return list(dict.fromkeys(feature for item in items for feature in item.plan.features))


def _by_plan(items: Sequence[Item]) -> dict[str, Item]:
    return {item.plan.plan_id: item for item in items}


def item_proration_lines(
    old: Sequence[Item],
    new: Sequence[Item],
    period_start: datetime,
    period_end: datetime,
    at: datetime,
    price: ItemPrice | None = None,
) -> list[InvoiceLine]:
    """Per-item proration of switching from `old` to `new` at `at` within the period.

    For each plan whose total per period (as `price` gives it: after a percent discount
    that is active) changes, a credit line `-round(old_total * remaining / period)` and a
    debit line `round(new_total * remaining / period)` (each rounded half-up; zero lines
    dropped). Plans are listed in the order of `old`, then the plans only `new` has.
    """
    before, after = _by_plan(old), _by_plan(new)
    plans = [*before, *(plan_id for plan_id in after if plan_id not in before)]
    span = period_range(at, period_end)
    lines: list[InvoiceLine] = []
    for plan_id in plans:
        was, now = before.get(plan_id), after.get(plan_id)
        old_total = _priced(was, price) if was else 0
        new_total = _priced(now, price) if now else 0
        if old_total == new_total:
            continue
        split = prorate(old_total, new_total, period_start, period_end, at)
        if was is not None and split.credit != 0:
            label = item_label(was.plan.name, was.quantity)
            lines.append(
                _proration(f"Unused time on {label}, {span}", split.credit, at, period_end, plan_id)
            )
        if now is not None and split.debit != 0:
            label = item_label(now.plan.name, now.quantity)
            lines.append(
                _proration(
                    f"Remaining time on {label}, {span}", split.debit, at, period_end, plan_id
                )
            )
    return lines


def unused_items_credit(
    items: Sequence[Item],
    period_start: datetime,
    period_end: datetime,
    at: datetime,
    price: ItemPrice | None = None,
) -> list[InvoiceLine]:
    """Credit for the unused rest of a paid period on every item (an interval change, a
    pause, a prorated refund)."""
    return item_proration_lines(items, [], period_start, period_end, at, price)


def _proration(
    description: str, amount: int, at: datetime, end: datetime, plan_id: str
) -> InvoiceLine:
    return InvoiceLine(
        kind=LineKind.PRORATION,
        description=description,
        amount=amount,
        period_start=at,
        period_end=end,
        plan_id=plan_id,
    )


def period_months(items: Sequence[Item]) -> int:
    """Length of the set's billing period in months (the set shares one period)."""
    plan = items[0].plan
    return interval_months(plan.interval, plan.interval_count)


def classify_items_change(old: Sequence[Item], new: Sequence[Item]) -> ChangeKind:
    """Upgrade when the recurring total per unit of time goes up, downgrade when it goes
    down, lateral when equal; a different period length wins over any price difference."""
    old_months, new_months = period_months(old), period_months(new)
    if old_months != new_months:
        return ChangeKind.INTERVAL_CHANGE
    # Same period length: comparing totals per period compares price per time exactly.
    old_total, new_total = recurring_total(old), recurring_total(new)
    if new_total > old_total:
        return ChangeKind.UPGRADE
    if new_total < old_total:
        return ChangeKind.DOWNGRADE
    return ChangeKind.LATERAL


def same_items(old: Sequence[Item], new: Sequence[Item]) -> bool:
    """The two sets hold the same plans in the same quantities (order and ids aside)."""
    return {i.plan.plan_id: i.quantity for i in old} == {i.plan.plan_id: i.quantity for i in new}


def carry_item_ids(old: Sequence[Item], new: Sequence[Item]) -> list[Item]:
    """`new` with each plan already on the subscription keeping its item id."""
    ids = {item.plan.plan_id: item.id for item in old}
    return [
        item.model_copy(update={"id": ids[item.plan.plan_id]}) if item.plan.plan_id in ids else item
        for item in new
    ]
