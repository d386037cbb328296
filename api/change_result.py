"""The answer to a change of a subscription (`change_plan`, `update_items`): the
subscription, the decision, and the invoice charged now or, for a preview, the invoice
the change would make (with the balance line its charge would add)."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from api.balance_preview import with_balance
from api.items_view import with_items
from api.routes.invoices import render
from db.repositories import invoices as invoice_repo
from domain.contracts import InvoiceDraft, SubscriptionView
from workflows.messages import ChangePlanResult


def subscription_out(view: SubscriptionView) -> dict[str, Any]:
    return with_items(view).model_dump(mode="json", exclude={"state_version"})


def draft_out(draft: InvoiceDraft) -> dict[str, Any]:
    """A previewed invoice: the shape of an invoice, never stored, so no id (its lines as
    stored ones show: without the plan a coupon looks at)."""
    body = draft.model_dump(mode="json", exclude={"lines": {"__all__": {"plan_id"}}})
    return {
        **body,
        "id": None,
        "status": "draft",
        "total": draft.total,
        "paid_at": None,
        "attempts": [],
    }


async def change_out(session: AsyncSession, result: ChangePlanResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "subscription": subscription_out(result.subscription),
        "decision": result.decision,
    }
    if result.preview:
        preview = result.invoice_preview
        if preview is not None:
            preview = await with_balance(session, preview)
        out["invoice_preview"] = draft_out(preview) if preview else None
        return out
    out["invoice"] = None
    if result.invoice is not None:
        stored = await invoice_repo.get_invoice(session, result.invoice.id)
        if stored is not None:
            out["invoice"] = (await render(session, [stored]))[0].model_dump(mode="json")
    return out
