"""The customer balance: settling invoices against it, manual entries, and properties over
random histories of item changes and renewals."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.balance import balance_after, settle
from domain.contracts import PlanSnapshot
from domain.errors import DomainError
from domain.invoices import InvoiceLine, LineKind
from domain.items import Item, item_proration_lines, period_lines, recurring_total
from domain.periods import Interval, next_boundary_after

AT = datetime(2025, 6, 16, tzinfo=UTC)


def line(amount: int, kind: LineKind = LineKind.PRORATION) -> InvoiceLine:
    return InvoiceLine(kind=kind, description="x", amount=amount, period_start=AT, period_end=AT)


def test_credit_pays_part_of_an_invoice_last() -> None:
    result = settle([line(1000, LineKind.SUBSCRIPTION), line(-200)], available=500, at=AT)
    assert [li.amount for li in result.lines] == [1000, -200, -500]
    assert result.lines[-1].kind is LineKind.BALANCE
    assert (result.total, result.applied, result.balance_change) == (300, 500, -500)


def test_credit_never_takes_an_invoice_below_zero() -> None:
    result = settle([line(400, LineKind.SUBSCRIPTION)], available=1000, at=AT)
    assert (result.total, result.applied) == (0, 400)


def test_no_balance_no_line() -> None:
    result = settle([line(400, LineKind.SUBSCRIPTION)], available=0, at=AT)
    assert [li.kind for li in result.lines] == [LineKind.SUBSCRIPTION]
    assert settle([], available=100, at=AT).lines == []


def test_a_net_credit_goes_to_the_balance() -> None:
    result = settle([line(-900), line(300)], available=50, at=AT)
    assert (result.total, result.credited, result.applied) == (0, 600, 0)
    assert result.lines[-1].amount == 600


def test_manual_entries() -> None:
    assert balance_after(0, 500) == 500
    assert balance_after(500, -500) == 0
    with pytest.raises(DomainError) as info:
        balance_after(500, -501)
    assert (info.value.code, info.value.http_status) == ("insufficient_balance", 409)
    with pytest.raises(DomainError):
        balance_after(500, 0)


# ---------------------------------------------------------------- properties


PLANS = [
    PlanSnapshot(plan_id=f"plan_{n}", amount=a, currency="usd", interval=Interval.MONTH, name=n)
    for n, a in (("a", 799), ("b", 1500), ("c", 333), ("d", 0))
]


@dataclass
class History:
    """A subscription's money over time, kept by the rules under test."""

    ledger: list[int] = field(default_factory=list)
    invoices: list[int] = field(default_factory=list)
    debits: int = 0
    credits: int = 0

    @property
    def balance(self) -> int:
        return sum(self.ledger)

    def invoice(self, lines: list[InvoiceLine], at: datetime) -> None:
        self.debits += sum(li.amount for li in lines if li.amount > 0)
        self.credits += -sum(li.amount for li in lines if li.amount < 0)
        result = settle(lines, self.balance, at)
        if result.balance_change:
            self.ledger.append(result.balance_change)
        self.invoices.append(result.total)


item_sets = st.lists(
    st.tuples(st.sampled_from(range(len(PLANS))), st.integers(1, 40)),
    min_size=1,
    max_size=4,
    unique_by=lambda pair: pair[0],
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("change"), item_sets, st.integers(0, 30 * 86_400)),
        st.tuples(st.just("manual"), st.integers(-5_000, 5_000), st.just(0)),
        st.tuples(st.just("renew"), st.just([]), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(first=item_sets, history=steps)
def test_the_ledger_balances_over_any_history(
    first: list[tuple[int, int]], history: list[tuple[str, object, int]]
) -> None:
    def items(pairs: list[tuple[int, int]]) -> list[Item]:
        return [Item(id=f"si_{p}", plan=PLANS[p], quantity=q) for p, q in pairs]

    anchor = datetime(2024, 1, 31, tzinfo=UTC)
    start, end = anchor, next_boundary_after(anchor, Interval.MONTH, 1, anchor)
    current = items(first)
    money = History()
    manual = 0
    money.invoice(period_lines(current, start, end), start)
    for kind, arg, offset in history:
        if kind == "renew":
            start, end = end, next_boundary_after(anchor, Interval.MONTH, 1, end)
            money.invoice(period_lines(current, start, end), start)
        elif kind == "manual":
            assert isinstance(arg, int)
            try:
                balance_after(money.balance, arg)
            except DomainError:
                continue
            money.ledger.append(arg)
            manual += arg
        else:
            assert isinstance(arg, list)
            new = items(arg)
            at = min(start + timedelta(seconds=offset), end)
            lines = item_proration_lines(current, new, start, end, at)
            if recurring_total(new) > recurring_total(current) or lines:
                money.invoice(lines, at)
            current = new
        # The ledger's sum is the balance, never negative; no invoice is negative.
        assert money.balance >= 0
        assert all(total >= 0 for total in money.invoices)
    # Cash paid, less credit left unused, is what was charged net of credits (the balance
    # counted as Stripe signs it, credit negative), manual entries aside.
    assert sum(money.invoices) - (money.balance - manual) == money.debits - money.credits
