"""The lines a subscription's items put on its invoices: the period's (one per item), a
first period cut short by a future anchor, the unused rest of a paid period. Runs from
before items (ITEMS_AND_BALANCE) bill their one plan with the lines they always had.

Period lines are at the items' totals (the invoice takes its discount line); `proration`
lines, which get no discount line, are priced on the totals after a percent discount that
is active (`Subscription.item_price`, `Subscription.prorated`)."""

from __future__ import annotations

from datetime import datetime

from domain.invoices import InvoiceLine
from domain.items import (
    opening_lines,
    partial_period_lines,
    period_lines,
    unused_items_credit,
)
from workflows.invoicing import opening_line, partial_period_line, period_line, unused_time_credit
from workflows.lifecycle.context import Subscription


def first_lines(
    sub: Subscription, anchor: datetime, start: datetime, end: datetime
) -> list[InvoiceLine]:
    """The first period's lines: in full, or pro rata up to a future anchor."""
    plan = sub.state.plan
    if sub.items_on():
        if anchor > start:
            return partial_period_lines(sub.items(), anchor, start, end, sub.item_price)
        return period_lines(sub.items(), start, end)
    if anchor > start:
        return [partial_period_line(sub.prorated(plan), anchor, start, end)]
    return [period_line(plan, start, end)]


def opening(
    sub: Subscription, anchor: datetime, start: datetime
) -> tuple[list[InvoiceLine], datetime]:
    """The lines of the period that starts at `start` (a trial's end) and its end."""
    if sub.items_on():
        return opening_lines(sub.items(), anchor, start, sub.item_price)
    line, end = opening_line(sub.state.plan, anchor, start)
    return [line], end


def renewal_lines(sub: Subscription, start: datetime, end: datetime) -> list[InvoiceLine]:
    """A full period of the items."""
    if sub.items_on():
        return period_lines(sub.items(), start, end)
    return [period_line(sub.state.plan, start, end)]


def unused_credit(
    sub: Subscription, period_start: datetime, period_end: datetime, at: datetime
) -> list[InvoiceLine]:
    """Credit for the paid period's time after `at` (a pause, a prorated refund)."""
    if sub.items_on():
        return unused_items_credit(sub.items(), period_start, period_end, at, sub.item_price)
    credit = unused_time_credit(sub.prorated(sub.state.plan), period_start, period_end, at)
    return [credit] if credit is not None else []
