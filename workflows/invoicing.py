"""Invoice lines for each lifecycle step, computed from domain rules (deterministic, no I/O)."""

from __future__ import annotations

from datetime import datetime

from domain.contracts import PlanSnapshot
from domain.invoices import InvoiceLine, LineKind
from domain.money import format_amount
from domain.periods import period_containing
from domain.proration import prorate


def period_line(plan: PlanSnapshot, start: datetime, end: datetime) -> InvoiceLine:
    """The full price of `plan` for one period."""
    return InvoiceLine(
        kind=LineKind.SUBSCRIPTION,
        description=f"{plan.name} ({format_amount(plan.amount, plan.currency)} / {_cadence(plan)})",
        amount=plan.amount,
        period_start=start,
        period_end=end,
    )


def partial_period_line(
    plan: PlanSnapshot, anchor: datetime, start: datetime, end: datetime
) -> InvoiceLine:
    """A first period shorter than a full one (a future billing anchor): charged pro rata."""
    full_start, full_end = period_containing(anchor, plan.interval, plan.interval_count, start)
    if full_end != end:
        # `end` is the first anchor boundary after `start`, so it closes start's period.
        raise ValueError("partial period must end on the anchor boundary")
    amount = prorate(0, plan.amount, full_start, full_end, start).debit
    return InvoiceLine(
        kind=LineKind.PRORATION,
        description=f"{plan.name} from {start.date().isoformat()} to the billing anchor",
        amount=amount,
        period_start=start,
        period_end=end,
    )


def unused_time_credit(
    plan: PlanSnapshot, period_start: datetime, period_end: datetime, at: datetime
) -> InvoiceLine | None:
    """Credit for the part of a paid period after `at` (refunds, interval changes)."""
    credit = prorate(plan.amount, 0, period_start, period_end, at).credit
    if credit == 0:
        return None
    return InvoiceLine(
        kind=LineKind.PRORATION,
        description=f"Unused time on {plan.name} after {at.date().isoformat()}",
        amount=credit,
        period_start=at,
        period_end=period_end,
    )


def _cadence(plan: PlanSnapshot) -> str:
    unit = plan.interval.value
    return unit if plan.interval_count == 1 else f"{plan.interval_count} {unit}s"
