"""A previewed invoice as the charge would settle it: with the customer's available credit
applied last (the charge activity does the same, `activities.invoice_balance`)."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from db.repositories import balance as balance_repo
from domain.balance import settle
from domain.contracts import InvoiceDraft
from domain.invoices import LineKind


async def with_balance(session: AsyncSession, draft: InvoiceDraft) -> InvoiceDraft:
    """`draft` with the balance line the charge would add (none when it has one already, its
    total is not positive, or there is no credit)."""
    if draft.total <= 0 or any(line.kind == LineKind.BALANCE for line in draft.lines):
        return draft
    available = await balance_repo.available(session, draft.customer_id, draft.currency)
    if available <= 0:
        return draft
    settled = settle(draft.lines, available, draft.created_at)
    return draft.model_copy(update={"lines": settled.lines})
