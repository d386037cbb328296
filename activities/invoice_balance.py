"""The customer balance on an invoice about to be charged, settled in the charge activity
(one transaction, before the attempt is opened), so a renewal stays one activity.

The workflow decides the lines; a change whose lines net to a credit ends with a positive
`balance` line (the credit moving into the balance), written to the ledger here. Any other
invoice with a positive total gets the customer's available credit applied last, at most
its total, as one negative `balance` line. Both entries are keyed by the invoice, so a
retried activity or a later attempt of the same invoice sees the same lines and total.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from db import balance_ledger
from db.engine import transaction
from db.repositories import invoices as invoice_repo
from domain.balance import settle
from domain.contracts import InvoiceDraft
from domain.invoices import InvoiceLine, LineKind


async def settle_balance(engine: AsyncEngine, invoice: InvoiceDraft, now: datetime) -> InvoiceDraft:
    """`invoice` as it is charged: with its balance line, the ledger written."""
    balance_lines = [line for line in invoice.lines if line.kind == LineKind.BALANCE]
    credited = sum(line.amount for line in balance_lines if line.amount > 0)
    if credited > 0:
        async with transaction(engine) as session:
            description = f"Net credit of invoice {invoice.id}"
            await balance_ledger.credit_from(session, invoice, credited, description, now)
        return invoice
    if balance_lines or invoice.total <= 0:
        return invoice
    async with transaction(engine) as session:
        if await invoice_repo.get_invoice(session, invoice.id) is not None:
            # Written by an earlier attempt: its lines are the invoice, whatever the balance
            # holds now.
            return invoice.model_copy(update={"lines": await _stored_lines(session, invoice.id)})
        applied = await balance_ledger.apply_up_to(
            session,
            customer_id=invoice.customer_id,
            currency=invoice.currency,
            invoice_id=invoice.id,
            subscription_id=invoice.subscription_id,
            wanted=invoice.total,
            now=now,
        )
    if applied == 0:
        return invoice
    settled = settle(invoice.lines, applied, invoice.created_at)
    return invoice.model_copy(update={"lines": settled.lines})


async def _stored_lines(session: AsyncSession, invoice_id: str) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            kind=LineKind(row.kind),
            description=row.description,
            amount=row.amount,
            period_start=row.period_start,
            period_end=row.period_end,
        )
        for row in await invoice_repo.lines_of(session, [invoice_id])
    ]
