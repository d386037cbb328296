"""Invoices, their lines, and payment attempts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Invoice, InvoiceLine, PaymentAttempt
from domain.contracts import InvoiceDraft

# A credit note (money owed back on an immediate cancel with a refund) is stored as an
# invoice with a negative total; it is issued as `credited`, never `paid`.
CREDIT_NOTE_REASON = "subscription_cancel_refund"
CREDITED = "credited"

_INVOICES = Invoice.__table__  # type: ignore[attr-defined]
_LINES = InvoiceLine.__table__  # type: ignore[attr-defined]
_NEW_INVOICE = (
    insert(_INVOICES).on_conflict_do_nothing(index_elements=["id"]).returning(_INVOICES.c.id)
)
_NEW_LINES = insert(_LINES)


async def ensure_invoice(session: AsyncSession, draft: InvoiceDraft) -> None:
    """Insert the invoice and its lines once; a repeat is a no-op (ids come from the workflow)."""
    inserted = await session.execute(
        _NEW_INVOICE,
        {
            "id": draft.id,
            "subscription_id": draft.subscription_id,
            "customer_id": draft.customer_id,
            "status": "open",
            "billing_reason": draft.billing_reason,
            "total": draft.total,
            "currency": draft.currency,
            "period_start": draft.period_start,
            "period_end": draft.period_end,
            "created_at": draft.created_at,
        },
    )
    if inserted.first() is None or not draft.lines:
        return
    await session.execute(
        _NEW_LINES,
        [
            {
                "invoice_id": draft.id,
                "position": position,
                "kind": line.kind.value,
                "description": line.description,
                "amount": line.amount,
                "period_start": line.period_start,
                "period_end": line.period_end,
            }
            for position, line in enumerate(draft.lines)
        ],
    )


def is_credit_note(invoice: Invoice) -> bool:
    return invoice.billing_reason == CREDIT_NOTE_REASON


def shown_status(invoice: Invoice) -> str:
    """The status the API shows: credit notes recorded as `paid` before they had their own
    status read `credited` too (stored rows are not rewritten)."""
    if is_credit_note(invoice) and invoice.status == "paid":
        return CREDITED
    return invoice.status


async def get_invoice(session: AsyncSession, invoice_id: str) -> Invoice | None:
    return await session.get(Invoice, invoice_id)


async def set_invoice_status(
    session: AsyncSession, invoice_id: str, status: str, *, paid_at: datetime | None = None
) -> None:
    """Move an open invoice to `status`; a paid invoice never changes again."""
    values: dict[str, object] = {"status": status}
    if paid_at is not None:
        values["paid_at"] = paid_at
    await session.execute(
        update(Invoice)
        .where(col(Invoice.id) == invoice_id, col(Invoice.status) == "open")
        .values(**values)
    )


async def list_invoices(
    session: AsyncSession,
    *,
    subscription_id: str | None,
    limit: int,
    customer_id: str | None = None,
) -> Sequence[Invoice]:
    query = (
        select(Invoice)
        .order_by(col(Invoice.created_at), col(Invoice.period_start), col(Invoice.id))
        .limit(limit)
    )
    if subscription_id:
        query = query.where(Invoice.subscription_id == subscription_id)
    if customer_id:
        query = query.where(Invoice.customer_id == customer_id)
    return (await session.exec(query)).all()


async def lines_of(session: AsyncSession, invoice_ids: Sequence[str]) -> Sequence[InvoiceLine]:
    query = (
        select(InvoiceLine)
        .where(col(InvoiceLine.invoice_id).in_(invoice_ids))
        .order_by(col(InvoiceLine.invoice_id), col(InvoiceLine.position))
    )
    return (await session.exec(query)).all()


async def attempts_of(
    session: AsyncSession, invoice_ids: Sequence[str]
) -> Sequence[PaymentAttempt]:
    query = (
        select(PaymentAttempt)
        .where(col(PaymentAttempt.invoice_id).in_(invoice_ids))
        .order_by(col(PaymentAttempt.invoice_id), col(PaymentAttempt.attempt_number))
    )
    return (await session.exec(query)).all()


async def succeeded_attempt(session: AsyncSession, invoice_id: str) -> PaymentAttempt | None:
    query = select(PaymentAttempt).where(
        PaymentAttempt.invoice_id == invoice_id, PaymentAttempt.status == "succeeded"
    )
    return (await session.exec(query)).first()


async def open_ids(session: AsyncSession, subscription_id: str) -> list[str]:
    query = select(Invoice.id).where(
        Invoice.subscription_id == subscription_id, Invoice.status == "open"
    )
    return list((await session.exec(query)).all())
