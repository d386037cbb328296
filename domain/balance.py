"""The customer balance: credit a customer holds per currency, and how invoices use it.

The balance is an append-only ledger; positive entries add credit, negative ones use it,
and the balance is their sum, never below zero. Every invoice applies available credit
last, at most its total; a change whose lines net to a credit moves that credit into the
balance instead of making a negative invoice or refunding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain import errors
from domain._time import as_utc
from domain.invoices import InvoiceLine, LineKind

APPLIED_DESCRIPTION = "Applied from your credit balance"
CREDITED_DESCRIPTION = "Added to your credit balance"


class BalanceTxnType(StrEnum):
    """Why the balance moved."""

    PRORATION_CREDIT = "proration_credit"  # a change's net credit
    APPLIED_TO_INVOICE = "applied_to_invoice"  # credit paying (part of) an invoice
    MANUAL = "manual"  # an operator's credit or debit
    ADJUSTMENT = "adjustment"  # migrated credit, corrections


@dataclass(frozen=True)
class Settlement:
    """An invoice's lines once the balance is settled: `credited` moved into the balance,
    `applied` taken from it; `lines` end with at most one `balance` line."""

    lines: list[InvoiceLine]
    applied: int
    credited: int

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def balance_change(self) -> int:
        """What the invoice does to the balance (positive: adds credit)."""
        return self.credited - self.applied


def settle(lines: Iterable[InvoiceLine], available: int, at: datetime) -> Settlement:
    """Apply the balance to an invoice, last: a positive total is reduced by at most
    `available`; a negative one (a net credit) is brought to zero and the credit goes to
    the balance. The total of the result is never negative."""
    if available < 0:
        raise ValueError(f"available balance must be >= 0, got {available}")
    moment = as_utc(at, "at")
    items = list(lines)
    total = sum(line.amount for line in items)
    if total < 0:
        line = _balance_line(CREDITED_DESCRIPTION, -total, moment)
        return Settlement([*items, line], applied=0, credited=-total)
    applied = min(total, available)
    if applied == 0:
        return Settlement(items, applied=0, credited=0)
    line = _balance_line(APPLIED_DESCRIPTION, -applied, moment)
    return Settlement([*items, line], applied=applied, credited=0)


def _balance_line(description: str, amount: int, at: datetime) -> InvoiceLine:
    return InvoiceLine(
        kind=LineKind.BALANCE,
        description=description,
        amount=amount,
        period_start=at,
        period_end=at,
    )


def balance_after(balance: int, amount: int) -> int:
    """The balance once a manual entry of `amount` is added; 409 `insufficient_balance`
    when a debit would take it below zero."""
    if balance < 0:
        raise ValueError(f"a balance is never negative, got {balance}")
    if amount == 0:
        raise errors.INVALID_AMOUNT("A balance transaction moves a non-zero amount")
    after = balance + amount
    if after < 0:
        raise errors.INSUFFICIENT_BALANCE(
            f"The balance holds {balance}; a debit of {-amount} would take it below zero"
        )
    return after
