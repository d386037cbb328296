"""Invoices with their lines and payment attempts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel.ext.asyncio.session import AsyncSession

from api.deps import CurrentKey, SessionDep
from api.errors import not_found
from api.schemas import InvoiceLineOut, InvoiceOut, PaymentAttemptOut
from db.models import Invoice
from db.repositories import invoices as repo
from domain import errors

router = APIRouter(prefix="/v1/invoices", tags=["invoices"])


@router.get("", response_model=list[InvoiceOut])
async def list_invoices(
    session: SessionDep,
    _: CurrentKey,
    subscription_id: str | None = None,
    customer_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[InvoiceOut]:
    if not subscription_id and not customer_id:
        raise errors.VALIDATION_ERROR("Pass subscription_id or customer_id")
    rows = await repo.list_invoices(
        session, subscription_id=subscription_id, customer_id=customer_id, limit=limit
    )
    return await render(session, rows)


@router.get("/{invoice_id}", response_model=InvoiceOut)
async def get_invoice(invoice_id: str, session: SessionDep, _: CurrentKey) -> InvoiceOut:
    invoice = await repo.get_invoice(session, invoice_id)
    if invoice is None:
        raise not_found("invoice", invoice_id)
    return (await render(session, [invoice]))[0]


async def render(session: AsyncSession, rows: Sequence[Invoice]) -> list[InvoiceOut]:
    ids = [r.id for r in rows]
    lines: dict[str, list[InvoiceLineOut]] = defaultdict(list)
    for line in await repo.lines_of(session, ids):
        lines[line.invoice_id].append(InvoiceLineOut.model_validate(line, from_attributes=True))
    attempts: dict[str, list[PaymentAttemptOut]] = defaultdict(list)
    for attempt in await repo.attempts_of(session, ids):
        attempts[attempt.invoice_id].append(
            PaymentAttemptOut.model_validate(attempt, from_attributes=True)
        )
    derived = ("lines", "attempts", "type", "status", "paid_at")
    return [
        InvoiceOut(
            **{k: getattr(r, k) for k in InvoiceOut.model_fields if k not in derived},
            type="credit_note" if repo.is_credit_note(r) else "invoice",
            status=repo.shown_status(r),
            # A credit note is never paid (older ones were recorded with a paid_at).
            paid_at=None if repo.is_credit_note(r) else r.paid_at,
            lines=lines[r.id],
            attempts=attempts[r.id],
        )
        for r in rows
    ]
