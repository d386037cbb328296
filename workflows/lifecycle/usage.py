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

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from domain.invoices import InvoiceLine, LineKind
from domain.items import Item
from domain.usage_contracts import MeteredItem, UsageLineDraft, UsageLinesRequest
from workflows.lifecycle.context import Subscription
from workflows.messages import UsageStretch
from workflows.patches import USAGE_IN_ARREARS

with workflow.unsafe.imports_passed_through():
    from activities.usage import UsageActivities

USAGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)


def metered_items(sub: Subscription) -> list[MeteredItem]:
    """The metered items billed in arrears by this run. Read from the state's items before
    asking anything, so a run without metered items (every run recorded before) asks no
    patch here."""
    metered = [
        MeteredItem(
            plan_id=item.plan.plan_id,
            meter_id=item.plan.meter_id,
            amount=item.plan.amount,
            package_size=item.plan.package_size,
            item_id=item.id,
        )
        for item in sub.state.items
        if item.plan.meter_id is not None
    ]
    if not metered or not sub.items_on() or not sub.patches.use(USAGE_IN_ARREARS):
        return []
    return metered


def bills_usage(sub: Subscription) -> bool:
    """Whether the next renewal bills usage: metered items, or usage left by a change."""
    return bool(metered_items(sub)) or bool(sub.state.unbilled_usage)


def leave_usage(sub: Subscription, new: list[Item], at: datetime, restarts: bool) -> None:
    """A change of items at `at` in the middle of the period: remember the usage so far of
    each metered item that leaves (of every one when the period restarts at `at`), to bill
    it with the next usage billing."""
    s = sub.state
    start = s.current_period_start
    if start is None or at <= start:
        return
    staying = {item.plan.plan_id for item in new}
    for item in metered_items(sub):
        if restarts or item.plan_id not in staying:
            s.unbilled_usage.append(UsageStretch(item=item, start=start, end=at))


async def arrears_lines(
    sub: Subscription,
    invoice_id: str,
    items: list[MeteredItem],
    start: datetime | None,
    end: datetime,
) -> list[InvoiceLine]:
    """The usage lines of an invoice: the metered items' for [start, end), then the usage
    changes left waiting (a stretch the items' own claim covers is not billed twice)."""
    lines = await usage_lines(sub, invoice_id, items, start, end) if start is not None else []
    covered = {(item.meter_id, start) for item in items}
    waiting: dict[tuple[datetime, datetime], list[MeteredItem]] = {}
    for stretch in sub.state.unbilled_usage:
        if (stretch.item.meter_id, stretch.start) not in covered:
            waiting.setdefault((stretch.start, stretch.end), []).append(stretch.item)
    sub.state.unbilled_usage = []
    for (from_, to), left in waiting.items():
        lines += await usage_lines(sub, invoice_id, left, from_, to)
    return lines


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
        description=draft.description,
        amount=draft.amount,
        period_start=draft.period_start,
        period_end=draft.period_end,
    )
