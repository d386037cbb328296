"""Plan changes as pure computations: whether a change is allowed, what it costs, and what
it does to the billing period. No I/O and no clock reads, so the workflow (and tests) can
call these with any instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.contracts import PlanSnapshot
from domain.invoices import InvoiceLine, proration_lines
from domain.item_quote import Billing, ChangeQuote, at_period_end, restarting, within_period
from domain.periods import interval_months, next_boundary_after
from domain.plan_change import (
    ChangeDecision,
    ChangeWhen,
    PlanChangePolicy,
    ProrationBehavior,
    check_plan_and_count,
    decide_plan_change,
)
from domain.plans import PlanTerms
from workflows.invoicing import period_line, unused_time_credit


def same_period_length(a: PlanTerms, b: PlanTerms) -> bool:
    return interval_months(a.interval, a.interval_count) == interval_months(
        b.interval, b.interval_count
    )


def anchor_after_change(
    current: PlanTerms, new: PlanTerms, anchor: datetime, effective_at: datetime
) -> datetime:
    """The anchor is kept when the period length stays; otherwise periods restart at the change.

    Keeping it matters for month-end anchors: Jan 31 -> Feb 29 -> Mar 31, not Mar 29.
    """
    return anchor if same_period_length(current, new) else effective_at


def period_after(plan: PlanTerms, anchor: datetime, start: datetime) -> tuple[datetime, datetime]:
    """The period of `plan` that begins at `start`, ending on the next anchor boundary."""
    return start, next_boundary_after(anchor, plan.interval, plan.interval_count, start)


def decide(
    current: PlanSnapshot,
    new: PlanSnapshot,
    status: str,
    changes_this_period: int,
    when: ChangeWhen | None,
    proration: ProrationBehavior | None,
    policy: PlanChangePolicy,
) -> ChangeDecision:
    """The domain decision, with the guardrails; raises DomainError with the rejection code."""
    return decide_plan_change(current, new, status, changes_this_period, when, proration, policy)


def check_trial_change(
    current: PlanSnapshot, new: PlanSnapshot, changes_this_period: int, limit: int
) -> None:
    """During a trial nothing has been charged: no price or interval rule applies, only
    plan identity, currency and the number of changes (the trial counts as a period)."""
    check_plan_and_count(current, new, changes_this_period, limit)


def quote_change(
    current: PlanSnapshot,
    new: PlanSnapshot,
    decision: ChangeDecision,
    *,
    period_start: datetime,
    period_end: datetime,
    anchor: datetime,
    now: datetime,
    prices: tuple[PlanSnapshot, PlanSnapshot] | None = None,
) -> ChangeQuote:
    """What `decision` does to a subscription on `current`, in its current period, at `now`.

    `prices` are `current` and `new` as proration prices them (after a percent discount
    that is active); periods that start are invoiced at the plans' own price."""
    prorate_current, prorate_new = prices or (current, new)
    if decision.when == ChangeWhen.PERIOD_END:
        new_anchor = anchor_after_change(current, new, anchor, period_end)
        start, end = period_after(new, new_anchor, period_end)
        return at_period_end(decision, [period_line(new, start, end)], new_anchor, start, end)
    if decision.new_anchor:
        # Interval change: credit the unused old period, charge a full new one from now.
        start, end = period_after(new, now, now)
        lines: list[InvoiceLine] = []
        if decision.proration != ProrationBehavior.NONE:
            credit = unused_time_credit(prorate_current, period_start, period_end, now)
            if credit is not None:
                lines.append(credit)
        return restarting(decision, [*lines, period_line(new, start, end)], now, end)
    return within_period(
        decision,
        lambda: proration_lines(
            prorate_current,
            prorate_new,
            period_start,
            period_end,
            now,
            old_name=current.name,
            new_name=new.name,
        ),
        now=now,
        anchor=anchor,
        period_start=period_start,
        period_end=period_end,
    )


@dataclass(frozen=True)
class InvoicePlan:
    """An invoice's content before it gets an id: reason, lines and the period it covers."""

    reason: str
    lines: list[InvoiceLine]
    start: datetime
    end: datetime


def upcoming_renewal(
    current: PlanSnapshot,
    plan: PlanSnapshot,
    anchor: datetime,
    period_end: datetime,
    waiting: list[InvoiceLine],
    extra: list[InvoiceLine] | None = None,
) -> InvoicePlan:
    """The next renewal invoice if the subscription were on `plan` at `period_end`."""
    start, end = period_after(
        plan, anchor_after_change(current, plan, anchor, period_end), period_end
    )
    lines = [*waiting, *(extra or []), period_line(plan, start, end)]
    return InvoicePlan("subscription_cycle", lines, start, end)


def preview_invoice(
    quote: ChangeQuote,
    current: PlanSnapshot,
    new: PlanSnapshot,
    anchor: datetime,
    period_end: datetime,
    waiting: list[InvoiceLine],
) -> InvoicePlan:
    """What a preview shows: the invoice the change charges now, else the next renewal.

    `waiting` are the lines already waiting for the next invoice.
    """
    if quote.billing == Billing.INVOICE_NOW and quote.lines:
        return InvoicePlan(
            "subscription_update", quote.lines, quote.invoice_start, quote.invoice_end
        )
    if quote.billing == Billing.AT_PERIOD_END:
        lines = [*waiting, *quote.lines]
        return InvoicePlan("subscription_cycle", lines, quote.invoice_start, quote.invoice_end)
    extra = quote.lines if quote.billing == Billing.NEXT_INVOICE else []
    return upcoming_renewal(current, new, anchor, period_end, waiting, extra)
