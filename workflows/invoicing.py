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
        plan_id=plan.plan_id,
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
        plan_id=plan.plan_id,
    )


def opening_line(
    plan: PlanSnapshot, anchor: datetime, start: datetime
) -> tuple[InvoiceLine, datetime]:
    """The line for the period starting at `start` and its end: the full price when `start`
    is on an anchor boundary, pro rata up to the next boundary otherwise."""
    full_start, end = period_containing(anchor, plan.interval, plan.interval_count, start)
    if full_start == start:
        return period_line(plan, start, end), end
    return partial_period_line(plan, anchor, start, end), end


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
        plan_id=plan.plan_id,
    )


def carry_credit(
    lines: list[InvoiceLine], at: datetime
) -> tuple[list[InvoiceLine], InvoiceLine | None]:
    """Keep an invoice from going negative: a net credit moves to the next invoice.

    Returns the lines to invoice (with a balancing `credit` line when the net is a credit,
    so the total is zero) and the credit line to carry to the next invoice, if any.
    """
    total = sum(line.amount for line in lines)
    if total >= 0:
        return lines, None
    day = at.date().isoformat()
    balance = InvoiceLine(
        kind=LineKind.CREDIT,
        description="Credit carried to the next invoice",
        amount=-total,
        period_start=at,
        period_end=at,
    )
    carried = InvoiceLine(
        kind=LineKind.CREDIT,
        description=f"Credit carried from {day}",
        amount=total,
        period_start=at,
        period_end=at,
    )
    return [*lines, balance], carried


def allocate_refund(amount: int, payments: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Split a refund over the period's payments, newest first, never beyond what each paid."""
    if amount < 0:
        raise ValueError("refund amount must be non-negative")
    plan: list[tuple[str, int]] = []
    left = amount
    for invoice_id, paid in reversed(payments):
        if left <= 0:
            break
        part = min(left, paid)
        if part > 0:
            plan.append((invoice_id, part))
            left -= part
    return plan


def _cadence(plan: PlanSnapshot) -> str:
    unit = plan.interval.value
    return unit if plan.interval_count == 1 else f"{plan.interval_count} {unit}s"
