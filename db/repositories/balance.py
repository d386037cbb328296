"""The customer balance ledger: append-only entries per customer and currency."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import BalanceTransaction, Customer, Invoice
from domain.balance import BalanceTxnType


async def balances(session: AsyncSession, customer_id: str) -> dict[str, int]:
    """Credit available per currency (currencies whose ledger sums to zero included)."""
    query = (
        select(BalanceTransaction.currency, func.sum(BalanceTransaction.amount))
        .where(BalanceTransaction.customer_id == customer_id)
        .group_by(col(BalanceTransaction.currency))
        .order_by(col(BalanceTransaction.currency))
    )
    return {currency: int(total) for currency, total in (await session.exec(query)).all()}


async def available(session: AsyncSession, customer_id: str, currency: str) -> int:
    query = select(func.coalesce(func.sum(BalanceTransaction.amount), 0)).where(
        BalanceTransaction.customer_id == customer_id, BalanceTransaction.currency == currency
    )
    return int((await session.exec(query)).one())


async def transactions(
    session: AsyncSession, customer_id: str, *, limit: int = 100
) -> Sequence[BalanceTransaction]:
    """The customer's ledger, oldest first."""
    query = (
        select(BalanceTransaction)
        .where(BalanceTransaction.customer_id == customer_id)
        .order_by(col(BalanceTransaction.seq))
        .limit(limit)
    )
    return (await session.exec(query)).all()


async def applied_to_period(
    session: AsyncSession, subscription_id: str, period_start: datetime
) -> int:
    """The credit the subscription's paid invoices for the period from `period_start` on
    (its renewal, its upgrades) took from the balance."""
    query = (
        select(func.coalesce(func.sum(BalanceTransaction.amount), 0))
        .join(Invoice, col(Invoice.id) == col(BalanceTransaction.invoice_id))
        .where(
            BalanceTransaction.subscription_id == subscription_id,
            BalanceTransaction.type == BalanceTxnType.APPLIED_TO_INVOICE.value,
            Invoice.status == "paid",
            col(Invoice.period_start) >= period_start,
        )
    )
    return -int((await session.exec(query)).one())


async def by_source(session: AsyncSession, source_key: str) -> BalanceTransaction | None:
    query = select(BalanceTransaction).where(BalanceTransaction.source_key == source_key)
    return (await session.exec(query)).first()


async def lock_customer(session: AsyncSession, customer_id: str) -> bool:
    """Serialise writers of one customer's ledger until the transaction ends (a debit reads
    the balance and appends in one step). False when there is no such customer."""
    query = select(Customer.id).where(Customer.id == customer_id).with_for_update()
    return (await session.exec(query)).first() is not None


async def append(
    session: AsyncSession,
    *,
    entry_id: str,
    customer_id: str,
    currency: str,
    amount: int,
    balance_before: int,
    type_: BalanceTxnType,
    description: str,
    now: datetime,
    invoice_id: str | None = None,
    subscription_id: str | None = None,
    actor: str | None = None,
    source_key: str | None = None,
) -> BalanceTransaction:
    """Append one entry; the caller holds `lock_customer` and has read `balance_before`."""
    entry = BalanceTransaction(
        id=entry_id,
        customer_id=customer_id,
        currency=currency,
        amount=amount,
        balance_after=balance_before + amount,
        type=type_.value,
        invoice_id=invoice_id,
        subscription_id=subscription_id,
        description=description,
        actor=actor,
        source_key=source_key,
        created_at=now,
    )
    session.add(entry)
    await session.flush()
    return entry
