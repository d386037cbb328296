"""Billing in arrears: the usage lines of a subscription's metered items.

The workflow decides when usage is billed: on the renewal invoice, which is due once the
grace for late events after the period end (`BillingPolicy.usage_grace_seconds`, clock
time: a timer, or the test clock reaching it) is over (`renewal.renews_at`); and at a
cancel, on the final invoice. The `usage_lines` activity decides how much: it prices
the running aggregate of [period_start, period_end) and claims it for the invoice, so a
retry or a replay prices the same aggregate again, and closes it (later events for that
period are refused `period_closed`). Runs recorded before USAGE_IN_ARREARS had no metered
items; the patch is asked only by a run that has some.

Usage during a free trial is free: ingestion accepts its events into the trial's aggregate
and they count against usage limits, but nothing here bills it. The trial end
(`lifecycle/trial.py`) invoices licensed lines only, a change of items during the trial
leaves no usage behind, a cancel while trialing bills no final usage (`cancel._final_usage`
bills an active or past-due period), and the first renewal bills [trial end, period end).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from domain.invoices import InvoiceLine, LineKind
from domain.items import Item
from domain.usage_contracts import (
    MeteredItem,
    UsageLineDraft,
    UsageLinesRequest,
    UsagePeriod,
    UsagePreviewRequest,
)
from workflows.lifecycle.context import Subscription
from workflows.messages import UsageStretch
from workflows.patches import USAGE_IN_ARREARS, USAGE_IN_PREVIEWS, USAGE_STRETCHES_MERGED

with workflow.unsafe.imports_passed_through():
    from activities.usage import UsageActivities

USAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)


def metered_items(sub: Subscription) -> list[MeteredItem]:
    """The metered items billed in arrears by this run. Read from the state's items before
    asking anything, so a run without metered items (every run recorded before) asks no
    patch here."""
    metered = _metered(sub.state.items)
    if not metered or not sub.items_on() or not sub.patches.use(USAGE_IN_ARREARS):
        return []
    return metered


def _metered(items: list[Item]) -> list[MeteredItem]:
    return [
        MeteredItem(
            plan_id=item.plan.plan_id,
            meter_id=item.plan.meter_id,
            amount=item.plan.amount,
            package_size=item.plan.package_size,
            item_id=item.id,
        )
        for item in items
        if item.plan.meter_id is not None
    ]


def bills_usage(sub: Subscription) -> bool:
    """Whether the next renewal bills usage: metered items, or usage left by a change."""
    return bool(metered_items(sub)) or bool(sub.state.unbilled_usage)


def leave_usage(sub: Subscription, new: list[Item], at: datetime, restarts: bool) -> None:
    """A change of items at `at` in the middle of the period: remember the usage so far of
    each metered item that leaves (of every one when the period restarts at `at`), to bill
    it with the next usage billing."""
    s = sub.state
    s.unbilled_usage += _left(sub, metered_items(sub), new, at, restarts)


def _left(
    sub: Subscription, metered: list[MeteredItem], new: list[Item], at: datetime, restarts: bool
) -> list[UsageStretch]:
    start = sub.state.current_period_start
    if start is None or at <= start:
        return []
    staying = {item.plan.plan_id for item in new}
    return [
        UsageStretch(item=item, start=start, end=at)
        for item in metered
        if restarts or item.plan_id not in staying
    ]


@dataclass(frozen=True)
class UsageGroup:
    """Metered items whose usage of [start, end) goes on one invoice."""

    items: list[MeteredItem]
    start: datetime
    end: datetime


def _groups(
    sub: Subscription,
    items: list[MeteredItem],
    start: datetime | None,
    end: datetime,
    waiting: list[UsageStretch],
) -> list[UsageGroup]:
    """What an invoice bills in arrears: the metered items' usage of [start, end), then the
    stretches left waiting by changes. Usage is aggregated per meter and period start, so
    one aggregate is billed once: a stretch the items' own period covers is not billed
    again, and stretches of one meter from one start (items on that meter that came and
    went) are one stretch, to the latest end, priced by the latest item. Runs recorded
    before USAGE_STRETCHES_MERGED billed each such stretch; the patch is asked only by a
    run that has some."""
    groups = [UsageGroup(items, start, end)] if start is not None else []
    covered = {(item.meter_id, start) for item in items}
    kept = [w for w in waiting if (w.item.meter_id, w.start) not in covered]
    keys = [(w.item.meter_id, w.start) for w in kept]
    if len(set(keys)) < len(keys) and sub.patches.use(USAGE_STRETCHES_MERGED):
        latest: dict[tuple[str, datetime], UsageStretch] = {}
        for stretch, key in zip(kept, keys, strict=True):
            if key not in latest or stretch.end >= latest[key].end:
                latest[key] = stretch
        kept = list(latest.values())
    left: dict[tuple[datetime, datetime], list[MeteredItem]] = {}
    for stretch in kept:
        left.setdefault((stretch.start, stretch.end), []).append(stretch.item)
    return groups + [UsageGroup(items, from_, to) for (from_, to), items in left.items()]


async def arrears_lines(
    sub: Subscription,
    invoice_id: str,
    items: list[MeteredItem],
    start: datetime | None,
    end: datetime,
) -> list[InvoiceLine]:
    """The usage lines of an invoice: the metered items' for [start, end), then the usage
    changes left waiting."""
    groups = _groups(sub, items, start, end, sub.state.unbilled_usage)
    sub.state.unbilled_usage = []
    lines: list[InvoiceLine] = []
    for group in groups:
        lines += await usage_lines(sub, invoice_id, group.items, group.start, group.end)
    return lines


@dataclass(frozen=True)
class ChangeNow:
    """A change of items applied now, as a preview sees it: the new items, when, and the
    new period when the period restarts (an interval change)."""

    items: list[Item]
    at: datetime
    new_period: tuple[datetime, datetime] | None = None


async def renewal_usage_so_far(
    sub: Subscription, change: ChangeNow | None = None
) -> list[InvoiceLine]:
    """For a preview of the next renewal: the `usage` lines it would bill, priced on the
    usage so far (read, neither claimed nor closed). With a `change` applied now, the items
    leaving are billed up to it and the new metered items over the period the renewal
    ends (the current one, or the new one when it restarts). A run recorded before
    USAGE_IN_PREVIEWS showed no usage in previews; the patch is asked only when there is
    some to show."""
    s = sub.state
    start, end = s.current_period_start, s.current_period_end
    if end is None or not sub.items_on():
        return []
    metered = metered_items(sub)
    waiting = list(s.unbilled_usage)
    if change is not None:
        restarts = change.new_period is not None
        waiting += _left(sub, metered, change.items, change.at, restarts)
        metered = _metered(change.items)
        if change.new_period is not None:
            start, end = change.new_period
    groups = [g for g in _groups(sub, metered, start, end, waiting) if g.items]
    if not groups or not sub.patches.use(USAGE_IN_PREVIEWS):
        return []
    request = UsagePreviewRequest(
        subscription_id=sub.inp.subscription_id,
        stretches=[UsagePeriod(items=g.items, start=g.start, end=g.end) for g in groups],
    )
    drafts = await workflow.execute_activity_method(
        UsageActivities.usage_so_far,
        request,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=USAGE_RETRY,
        summary=f"usage so far of {sum(len(g.items) for g in groups)} metered item(s)",
    )
    return [_invoice_line(draft) for draft in drafts]


def usage_grace(sub: Subscription) -> timedelta:
    """How long after a period end its late events still count (clock time)."""
    return timedelta(seconds=sub.inp.policy.usage_grace_seconds)


async def usage_lines(
    sub: Subscription,
    invoice_id: str,
    items: list[MeteredItem],
    start: datetime,
    end: datetime,
) -> list[InvoiceLine]:
    """One `usage` line per metered item for [start, end), claimed for `invoice_id` and
    closed."""
    if not items:
        return []
    request = UsageLinesRequest(
        subscription_id=sub.inp.subscription_id,
        customer_id=sub.inp.customer_id,
        invoice_id=invoice_id,
        period_start=start,
        period_end=end,
        items=items,
        close=True,
    )
    drafts = await workflow.execute_activity_method(
        UsageActivities.usage_lines,
        request,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=USAGE_RETRY,
        summary=f"usage of {len(items)} metered item(s) for {invoice_id}",
    )
    return [_invoice_line(draft) for draft in drafts]


def _invoice_line(draft: UsageLineDraft) -> InvoiceLine:
    return InvoiceLine(
        kind=LineKind.USAGE,
        plan_id=draft.plan_id,
        description=draft.description,
        amount=draft.amount,
        period_start=draft.period_start,
        period_end=draft.period_end,
    )
