"""The pure plan-change and invoicing helpers the workflow builds on (no stack needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.contracts import PlanSnapshot
from domain.invoices import InvoiceLine, LineKind
from domain.item_quote import ChangeQuote
from domain.periods import Interval
from domain.plan_change import ChangeWhen, PlanChangePolicy, ProrationBehavior
from workflows.invoicing import allocate_refund, carry_credit, opening_line
from workflows.plan_changes import (
    Billing,
    decide,
    preview_invoice,
    quote_change,
    upcoming_renewal,
)


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def plan(plan_id: str, amount: int, interval: str = "month") -> PlanSnapshot:
    return PlanSnapshot(
        plan_id=plan_id, name=plan_id, amount=amount, currency="usd", interval=Interval(interval)
    )


BASIC, PRO, LITE = plan("basic", 1000), plan("pro", 2000), plan("lite", 500)
YEARLY = plan("yearly", 10000, "year")
START, END = at(2027, 4, 1), at(2027, 5, 1)  # 30 days
HALF = at(2027, 4, 16)


def quote(new: PlanSnapshot, when: str | None = None, proration: str | None = None) -> ChangeQuote:
    decision = decide(
        BASIC,
        new,
        "active",
        0,
        ChangeWhen(when) if when else None,
        ProrationBehavior(proration) if proration else None,
        PlanChangePolicy(),
    )
    return quote_change(
        BASIC, new, decision, period_start=START, period_end=END, anchor=START, now=HALF
    )


def amounts(lines: list[InvoiceLine]) -> list[tuple[str, int]]:
    return [(line.kind.value, line.amount) for line in lines]


def test_upgrade_is_invoiced_now_within_the_same_period() -> None:
    q = quote(PRO)
    assert q.billing == Billing.INVOICE_NOW
    assert amounts(q.lines) == [("proration", -500), ("proration", 1000)]
    assert (q.period_start, q.period_end, q.anchor) == (START, END, START)
    assert (q.invoice_start, q.invoice_end) == (HALF, END)


@pytest.mark.parametrize(
    ("proration", "billing", "line_count"),
    [("create_prorations", Billing.NEXT_INVOICE, 2), ("none", Billing.NONE, 0)],
)
def test_deferred_or_no_proration(proration: str, billing: Billing, line_count: int) -> None:
    q = quote(PRO, proration=proration)
    assert q.billing == billing
    assert len(q.lines) == line_count


def test_downgrade_waits_for_the_period_end_at_the_new_price() -> None:
    q = quote(LITE)
    assert q.billing == Billing.AT_PERIOD_END
    assert q.effective_at == END
    assert amounts(q.lines) == [("subscription", 500)]
    assert (q.period_start, q.period_end, q.anchor) == (END, at(2027, 6, 1), START)


def test_interval_change_now_starts_a_new_anchored_period() -> None:
    q = quote(YEARLY)
    assert q.billing == Billing.INVOICE_NOW
    assert amounts(q.lines) == [("proration", -500), ("subscription", 10000)]
    assert (q.period_start, q.period_end, q.anchor) == (HALF, at(2028, 4, 16), HALF)


def test_interval_change_at_period_end_restarts_periods_there() -> None:
    q = quote(YEARLY, when="period_end")
    assert (q.period_start, q.period_end, q.anchor) == (END, at(2028, 5, 1), END)


def test_previews_show_the_invoice_now_or_the_next_renewal() -> None:
    waiting = [
        InvoiceLine(
            kind=LineKind.CREDIT, description="c", amount=-100, period_start=HALF, period_end=HALF
        )
    ]
    now = preview_invoice(quote(PRO), BASIC, PRO, START, END, waiting)
    assert now.reason == "subscription_update"
    assert amounts(now.lines) == [("proration", -500), ("proration", 1000)]
    later = preview_invoice(
        quote(PRO, proration="create_prorations"), BASIC, PRO, START, END, waiting
    )
    assert later.reason == "subscription_cycle"
    assert amounts(later.lines) == [
        ("credit", -100),
        ("proration", -500),
        ("proration", 1000),
        ("subscription", 2000),
    ]
    assert (later.start, later.end) == (END, at(2027, 6, 1))
    renewal = upcoming_renewal(BASIC, BASIC, START, END, [])
    assert amounts(renewal.lines) == [("subscription", 1000)]


def test_carry_credit_keeps_invoices_at_zero_or_more() -> None:
    lines = [
        InvoiceLine(
            kind=LineKind.PRORATION, description="p", amount=-900, period_start=HALF, period_end=END
        ),
        InvoiceLine(
            kind=LineKind.SUBSCRIPTION,
            description="s",
            amount=300,
            period_start=HALF,
            period_end=END,
        ),
    ]
    kept, carried = carry_credit(lines[1:], HALF)
    assert (kept, carried) == (lines[1:], None)
    billed, carried = carry_credit(lines, HALF)
    assert amounts(billed) == [("proration", -900), ("subscription", 300), ("credit", 600)]
    assert sum(line.amount for line in billed) == 0
    assert carried is not None and (carried.kind, carried.amount) == (LineKind.CREDIT, -600)


def test_allocate_refund_newest_payment_first_never_beyond_what_was_paid() -> None:
    payments = [("in_first", 1000), ("in_upgrade", 1800)]
    assert allocate_refund(2400, payments) == [("in_upgrade", 1800), ("in_first", 600)]
    assert allocate_refund(500, payments) == [("in_upgrade", 500)]
    assert allocate_refund(9999, payments) == [("in_upgrade", 1800), ("in_first", 1000)]
    assert allocate_refund(0, payments) == []
    assert allocate_refund(100, []) == []
    with pytest.raises(ValueError):
        allocate_refund(-1, payments)


def test_opening_line_is_full_on_a_boundary_and_pro_rata_before_the_anchor() -> None:
    full, end = opening_line(BASIC, START, START)
    assert (full.kind, full.amount, end) == (LineKind.SUBSCRIPTION, 1000, END)
    # A trial ending Apr 16 with the anchor on the 1st: 15 of 30 days to May 1.
    part, end = opening_line(BASIC, START, HALF)
    assert (part.kind, part.amount, end) == (LineKind.PRORATION, 500, END)
