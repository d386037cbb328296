"""What a decided change of items does, computed before anything is done: its invoice
lines, how they are billed, and the billing period once it has taken effect."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.invoices import InvoiceLine
from domain.items import (
    Item,
    ItemPrice,
    item_proration_lines,
    period_lines,
    period_months,
    unused_items_credit,
)
from domain.periods import next_boundary_after
from domain.plan_change import ChangeDecision, ChangeWhen, ProrationBehavior


class Billing(StrEnum):
    """How the money side of a change (of items, or of the plan) is settled."""

    INVOICE_NOW = "invoice_now"  # an invoice is issued (and charged) with the change
    NEXT_INVOICE = "next_invoice"  # the lines wait for the next renewal invoice
    NONE = "none"  # no proration at all
    AT_PERIOD_END = "at_period_end"  # nothing now; the renewal is at the new plan or items


@dataclass(frozen=True)
class ChangeQuote:
    """Everything a decided change (of items, or of the plan) does, computed before
    anything is done."""

    decision: ChangeDecision
    billing: Billing
    effective_at: datetime
    # The change's own lines: prorations; for an interval change the unused-time credit
    # and the first full period of the new items; at period end the renewal's lines.
    lines: list[InvoiceLine]
    invoice_start: datetime
    invoice_end: datetime
    # The billing anchor and period once the change has taken effect.
    anchor: datetime
    period_start: datetime
    period_end: datetime


def at_period_end(
    decision: ChangeDecision,
    renewal: list[InvoiceLine],
    anchor: datetime,
    start: datetime,
    end: datetime,
) -> ChangeQuote:
    """A change that waits for the period end: nothing now; the renewal bills `renewal`
    for the period [start, end) on `anchor`."""
    return ChangeQuote(
        decision=decision,
        billing=Billing.AT_PERIOD_END,
        effective_at=start,
        lines=renewal,
        invoice_start=start,
        invoice_end=end,
        anchor=anchor,
        period_start=start,
        period_end=end,
    )


def restarting(
    decision: ChangeDecision, lines: list[InvoiceLine], now: datetime, end: datetime
) -> ChangeQuote:
    """A change of period length: a new period [now, end) on a new anchor, invoiced now."""
    return ChangeQuote(
        decision=decision,
        billing=Billing.INVOICE_NOW,
        effective_at=now,
        lines=lines,
        invoice_start=now,
        invoice_end=end,
        anchor=now,
        period_start=now,
        period_end=end,
    )


def within_period(
    decision: ChangeDecision,
    prorations: Callable[[], list[InvoiceLine]],
    *,
    now: datetime,
    anchor: datetime,
    period_start: datetime,
    period_end: datetime,
) -> ChangeQuote:
    """A change now inside the current period: its prorations (none with proration
    `none`) invoiced at once or left for the next invoice, as the decision says."""
    if decision.proration == ProrationBehavior.NONE:
        billing, lines = Billing.NONE, []
    else:
        lines = prorations()
        billing = (
            Billing.INVOICE_NOW
            if decision.proration == ProrationBehavior.ALWAYS_INVOICE
            else Billing.NEXT_INVOICE
        )
    return ChangeQuote(
        decision=decision,
        billing=billing,
        effective_at=now,
        lines=lines,
        invoice_start=now,
        invoice_end=period_end,
        anchor=anchor,
        period_start=period_start,
        period_end=period_end,
    )


def anchor_after(
    old: Sequence[Item], new: Sequence[Item], anchor: datetime, at: datetime
) -> datetime:
    """The anchor stays while the period length does (month ends spring back: Jan 31 ->
    Feb 29 -> Mar 31); a new period length restarts periods at `at`."""
    return anchor if period_months(old) == period_months(new) else at


def period_from(
    items: Sequence[Item], anchor: datetime, start: datetime
) -> tuple[datetime, datetime]:
    """The period of `items` that begins at `start`, ending on the next anchor boundary."""
    plan = items[0].plan
    return start, next_boundary_after(anchor, plan.interval, plan.interval_count, start)


def quote_items_change(
    old: Sequence[Item],
    new: Sequence[Item],
    decision: ChangeDecision,
    *,
    period_start: datetime,
    period_end: datetime,
    anchor: datetime,
    now: datetime,
    price: ItemPrice | None = None,
) -> ChangeQuote:
    """What `decision` does to a subscription on `old`, in its current period, at `now`.

    `price` gives an item's total as proration prices it (after a percent discount that is
    active); periods that start are invoiced at the items' own totals."""
    if decision.when == ChangeWhen.PERIOD_END:
        new_anchor = anchor_after(old, new, anchor, period_end)
        start, end = period_from(new, new_anchor, period_end)
        return at_period_end(decision, period_lines(new, start, end), new_anchor, start, end)
    if decision.new_anchor:
        start, end = period_from(new, now, now)
        lines: list[InvoiceLine] = []
        if decision.proration != ProrationBehavior.NONE:
            lines += unused_items_credit(old, period_start, period_end, now, price)
        return restarting(decision, lines + period_lines(new, start, end), now, end)
    return within_period(
        decision,
        lambda: item_proration_lines(old, new, period_start, period_end, now, price),
        now=now,
        anchor=anchor,
        period_start=period_start,
        period_end=period_end,
    )
