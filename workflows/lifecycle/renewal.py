"""A renewal: at the period end the next period is invoiced at the plan's price.

With metered items the renewal is due the usage grace after the period end (late events
of the period that ended still count meanwhile, `renews_at`), and its invoice also bills
that period's usage in arrears (a `usage` line per metered item, `lifecycle/usage.py`).

A change scheduled for the period end (a downgrade, by default) takes effect first, so
the renewal is at the new price (or items); lines waiting for the next invoice (deferred
prorations, carried credits, a pause's credit) are on it. Paid, the period is renewed;
declined, the subscription enters dunning. A cancel scheduled for the period end ends it
here instead.
"""

from __future__ import annotations

from datetime import datetime

from domain.contracts import EventDraft, InvoiceDraft
from domain.invoices import InvoiceLine
from workflows.lifecycle.cancel import cancel_now
from workflows.lifecycle.context import Subscription
from workflows.lifecycle.dunning import enter_dunning
from workflows.lifecycle.item_lines import renewal_lines
from workflows.lifecycle.items import apply_pending_items
from workflows.lifecycle.usage import arrears_lines, bills_usage, metered_items, usage_grace
from workflows.messages import CarriedState
from workflows.patches import CHARGE_PROJECTS_RENEWAL
from workflows.plan_changes import anchor_after_change, period_after


def renews_at(sub: Subscription) -> datetime:
    """When the renewal is due: the period end, plus the usage grace with metered items."""
    end = sub.state.current_period_end
    assert end is not None
    return end + usage_grace(sub) if bills_usage(sub) else end


async def period_end(sub: Subscription) -> bool:
    """Renew; True when the new period was paid."""
    s = sub.state
    assert s.current_period_end is not None
    # The usage of the period that ended, by the items it had (before a scheduled change).
    metered = metered_items(sub)
    in_arrears = bool(metered) or bool(s.unbilled_usage)
    used_from, used_to = s.current_period_start, s.current_period_end
    if s.cancel_at_period_end:
        # Service ended at the period end, even when the usage grace delayed this step.
        await cancel_now(
            sub, reason="cancel_at_period_end", actor=None, settle=True, ended_at=used_to
        )
        return False
    start = s.current_period_end
    events = apply_pending_plan(sub, start, when="period_end")
    start, end = period_after(s.plan, s.billing_cycle_anchor, start)
    usage: list[InvoiceLine] = []
    invoice_id = None
    if in_arrears:
        invoice_id = sub.new_id("in")
        usage = await arrears_lines(sub, invoice_id, metered, used_from, used_to)
    invoice = next_invoice(sub, "subscription_cycle", start, end, usage, invoice_id)
    sub.start_period(start, end)

    def renewed(paid: CarriedState) -> list[EventDraft]:
        paid.renewals += 1
        return [sub.event("subscription.renewed", period_end=end)]

    outcome = await sub.charge_opening(CHARGE_PROJECTS_RENEWAL, invoice, events, renewed)
    if outcome.status == "paid":
        return True
    await enter_dunning(sub, invoice, outcome, extra=events)
    return False


def apply_pending_plan(sub: Subscription, at: datetime, when: str) -> list[EventDraft]:
    """Switch to the scheduled plan or items; a new period length restarts periods at `at`."""
    s = sub.state
    if s.pending_items is not None:
        return apply_pending_items(sub, at, when)
    if s.pending_plan is None:
        return []
    old = s.plan
    s.billing_cycle_anchor = anchor_after_change(old, s.pending_plan, s.billing_cycle_anchor, at)
    s.plan, s.pending_plan, s.pending_change = s.pending_plan, None, None
    return [
        sub.event(
            "subscription.plan_changed", from_plan=old.plan_id, to_plan=s.plan.plan_id, when=when
        )
    ]


def next_invoice(
    sub: Subscription,
    reason: str,
    start: datetime,
    end: datetime,
    usage: list[InvoiceLine] | None = None,
    invoice_id: str | None = None,
) -> InvoiceDraft:
    """The invoice opening a new period: waiting lines, the period at the plan's price, then
    the usage of the period that ended (in arrears)."""
    s = sub.state
    period = renewal_lines(sub, start, end)  # first: a run moving to items drops old credit
    lines = [*s.pending_proration_lines, *period, *(usage or [])]
    invoice, carried = sub.build_invoice(reason, lines, start, end, invoice_id)
    s.pending_proration_lines = [carried] if carried else []
    return invoice
