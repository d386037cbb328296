"""Invoice lines and proration line items."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.errors import DomainError
from domain.invoices import InvoiceLine, LineKind, proration_lines
from domain.periods import Interval
from domain.plans import PlanTerms


def _total(lines: list[InvoiceLine]) -> int:
    return sum(line.amount for line in lines)


SETTINGS = settings(max_examples=200, deadline=None)
START = datetime(2024, 4, 1, tzinfo=UTC)
END = datetime(2024, 5, 1, tzinfo=UTC)
HALFWAY = datetime(2024, 4, 16, tzinfo=UTC)


def plan(plan_id: str, amount: int, currency: str = "usd") -> PlanTerms:
    return PlanTerms(plan_id=plan_id, amount=amount, currency=currency, interval=Interval.MONTH)


def test_halfway_upgrade_lines() -> None:
    lines = proration_lines(plan("basic", 1000), plan("pro", 2000), START, END, HALFWAY)
    assert [(line.kind, line.amount, line.description) for line in lines] == [
        (LineKind.PRORATION, -500, "Unused time on basic after 2024-04-16"),
        (LineKind.PRORATION, 1000, "Remaining time on pro after 2024-04-16"),
    ]
    assert all((line.period_start, line.period_end) == (HALFWAY, END) for line in lines)
    assert _total(lines) == 500


def test_change_at_period_end_has_no_lines() -> None:
    assert proration_lines(plan("basic", 1000), plan("pro", 2000), START, END, END) == []


def test_zero_amount_lines_are_dropped() -> None:
    lines = proration_lines(plan("free", 0), plan("pro", 2000), START, END, HALFWAY)
    assert [line.amount for line in lines] == [1000]


def test_guards() -> None:
    with pytest.raises(DomainError) as info:
        proration_lines(plan("a", 1), plan("b", 2, "eur"), START, END, HALFWAY)
    assert info.value.code == "currency_mismatch"
    yearly = PlanTerms(plan_id="y", amount=1, currency="usd", interval=Interval.YEAR)
    with pytest.raises(ValueError):
        proration_lines(plan("a", 1), yearly, START, END, HALFWAY)
    with pytest.raises(ValueError):
        proration_lines(plan("a", 1), plan("b", 2), START, END, END + timedelta(seconds=1))


def test_invoice_line_validation() -> None:
    line = InvoiceLine(
        kind="subscription", description="Pro", amount=2000, period_start=START, period_end=END
    )
    assert line.kind is LineKind.SUBSCRIPTION
    assert _total([line, line]) == 4000
    assert _total([]) == 0
    with pytest.raises(ValueError):
        InvoiceLine(
            kind="credit",
            description="x",
            amount=-1,
            period_start=datetime(2024, 4, 1),
            period_end=END,
        )
    with pytest.raises(ValidationError):
        InvoiceLine(kind="credit", description="x", amount=1, period_start=END, period_end=START)
    with pytest.raises(ValidationError):
        InvoiceLine(kind="credit", description="x", amount=1.5, period_start=START, period_end=END)


amounts = st.integers(0, 10**9)
offsets = st.integers(0, (END - START).days * 86_400 * 1_000_000)


@SETTINGS
@given(amounts, amounts, offsets)
def test_lines_never_exceed_plan_amounts(old: int, new: int, micros: int) -> None:
    at = START + timedelta(microseconds=micros)
    lines = proration_lines(plan("old", old), plan("new", new), START, END, at)
    assert all(line.kind is LineKind.PRORATION and line.amount != 0 for line in lines)
    credits = [line.amount for line in lines if line.amount < 0]
    debits = [line.amount for line in lines if line.amount > 0]
    assert len(credits) <= 1 and len(debits) <= 1
    assert all(-old <= amount < 0 for amount in credits)
    assert all(0 < amount <= new for amount in debits)
    assert -old <= _total(lines) <= new


@SETTINGS
@given(amounts, amounts)
def test_change_at_period_start_swaps_full_amounts(old: int, new: int) -> None:
    lines = proration_lines(plan("old", old), plan("new", new), START, END, START)
    assert _total(lines) == new - old
    assert sorted(line.amount for line in lines) == sorted(a for a in (-old, new) if a)
