"""Cancel: at the period end (scheduled, undone by reactivating) or now.

A cancel at period end only marks the subscription; the renewal (or the trial end) ends
it instead of charging. An immediate cancel, requested through the API or through
Temporal, settles what waits for the next invoice: prorations owed are invoiced, and with
a prorated refund the unused time plus any waiting credit is refunded over the period's
payments. Dunning that runs out, or a trial that ends with no payment method, also ends
here, without settling. A settling cancel also bills the usage of metered items from the
period's start up to the cancel (or the period end, for a cancel at period end) in
arrears, on the final invoice. A cancel at period end of a subscription with metered items
runs at the end of the usage grace; it records the period end, when service ended, as
`canceled_at` and as the time of `subscription.canceled`.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

from domain import errors
from domain.contracts import EventDraft, RefundRequest
from domain.invoices import InvoiceLine
from domain.status import TERMINAL
from domain.status import SubscriptionStatus as S
from workflows.errors import rejected
from workflows.invoicing import allocate_refund
from workflows.lifecycle.context import Subscription
from workflows.lifecycle.item_lines import unused_credit
from workflows.lifecycle.usage import arrears_lines, metered_items
from workflows.messages import ActorRequest, CancelRequest


def validate_cancel(sub: Subscription, req: CancelRequest) -> None:
    if sub.status in TERMINAL:
        raise rejected(errors.SUBSCRIPTION_CANCELED(f"Subscription is already {sub.status}"))
    if req.refund not in ("none", "prorated"):
        raise rejected(errors.INVALID_REFUND("refund must be none or prorated"))
    if req.refund == "prorated" and req.at_period_end:
        raise rejected(
            errors.INVALID_REFUND("A prorated refund applies only to an immediate cancel")
        )
    # Between a period end and its renewal (the usage grace) "the period end" has passed:
    # such a cancel would end service in the past.
    end = sub.state.current_period_end
    scheduling = (
        req.at_period_end
        and sub.status in (S.ACTIVE, S.TRIALING)
        and not sub.state.cancel_at_period_end  # already scheduled: asking again is a no-op
    )
    if scheduling and end is not None and sub.clock.now() >= end:
        raise rejected(
            errors.PERIOD_RENEWING(
                "The billing period is renewing; cancel now, or at the next period end once "
                "the renewal is done"
            )
        )


async def request_cancel(sub: Subscription, req: CancelRequest) -> None:
    """Schedule the cancel for the period end (once), or cancel now."""
    s = sub.state
    if req.at_period_end and s.status in (S.ACTIVE, S.TRIALING):
        if s.cancel_at_period_end:
            return  # already scheduled
        # A trial canceled at period end ends with the trial, uncharged.
        s.cancel_at_period_end = True
        sub.dirty = True
        await sub.sync(
            [sub.event("subscription.cancel_scheduled", at=s.current_period_end, actor=req.actor)]
        )
        return
    void = s.open_invoice.id if s.open_invoice else None
    await cancel_now(
        sub, reason="requested", actor=req.actor, void=void, refund=req.refund, settle=True
    )
    sub.dirty = True


def validate_reactivate(sub: Subscription) -> None:
    if not sub.state.cancel_at_period_end:
        raise rejected(
            errors.NOT_PENDING_CANCEL("Subscription has no pending cancellation to undo")
        )


async def undo_cancel(sub: Subscription, req: ActorRequest) -> None:
    """Undo a cancel scheduled for the period end."""
    sub.state.cancel_at_period_end = False
    sub.dirty = True
    await sub.sync([sub.event("subscription.reactivated", actor=req.actor)])


async def cancel_as_requested_in_temporal(sub: Subscription) -> None:
    """An immediate cancel on behalf of whoever asked Temporal to cancel the workflow
    (actor `temporal`, their reason in the event), refunding as the policy says."""
    s = sub.state
    await cancel_now(
        sub,
        reason="temporal_cancel_request",
        actor="temporal",
        void=s.open_invoice.id if s.open_invoice else None,
        refund=sub.inp.policy.temporal_cancel_refund,
        settle=True,
        detail=workflow.cancellation_reason() or None,
    )


async def cancel_now(
    sub: Subscription,
    reason: str,
    actor: str | None,
    *,
    void: str | None = None,
    uncollectible: str | None = None,
    refund: str = "none",
    settle: bool = False,
    detail: str | None = None,
    ended_at: datetime | None = None,
) -> None:
    """End the subscription now. With `settle` (a requested or scheduled cancel), lines
    still waiting for the next invoice are settled: a net debit is invoiced, and with
    `refund="prorated"` the unused time plus any waiting credit is refunded. `ended_at`
    (default now) is when service ended, recorded as `canceled_at` and as the time of
    `subscription.canceled`: a cancel at period end with metered items runs at the end of
    the usage grace, after the service ended at the period end."""
    s = sub.state
    now = sub.clock.now()
    ended = now if ended_at is None else ended_at
    events: list[EventDraft] = []
    statuses: dict[str, str] = {}
    if void:
        statuses[void] = "void"
    if uncollectible:
        statuses[uncollectible] = "uncollectible"
    if settle:
        events += await _settle(sub, refund, actor, statuses)
    s.status = S.CANCELED
    s.canceled_at = ended
    s.cancel_reason = reason
    s.cancel_at_period_end = False
    s.pending_change, s.pending_plan = None, None
    s.pending_proration_lines = []
    s.dunning.next_retry_at = None
    s.open_invoice = None
    extra = {"detail": detail} if detail else {}
    canceled = sub.event("subscription.canceled", reason=reason, actor=actor, **extra)
    events.append(canceled.model_copy(update={"occurred_at": ended}))
    await sub.sync(events, features=[], invoice_status=statuses or None)


async def _settle(
    sub: Subscription, refund: str, actor: str | None, statuses: dict[str, str]
) -> list[EventDraft]:
    s = sub.state
    now = sub.clock.now()
    invoice_id, usage = await _final_usage(sub, now)
    lines = [*s.pending_proration_lines, *usage]
    s.pending_proration_lines = []
    if (
        refund == "prorated"
        and s.status == S.ACTIVE
        and s.current_period_start is not None
        and s.current_period_end is not None
        and now < s.current_period_end  # not in a renewal's usage grace: nothing unused
    ):
        lines += unused_credit(sub, s.current_period_start, s.current_period_end, now)
    total = sum(line.amount for line in lines)
    if total < 0 and refund == "prorated":
        return await _refund(sub, lines, actor, invoice_id)
    if total <= 0:
        return []
    # Prorations owed (e.g. an upgrade with create_prorations), usage: a final invoice.
    invoice = sub.invoice("subscription_cancel", lines, now, now, invoice_id)
    outcome = await sub.charge(invoice, 1, actor=actor)
    if outcome.status == "paid":
        return sub.paid_events(invoice, outcome, actor=actor)
    statuses[invoice.id] = "uncollectible"
    return [sub.failed_event(invoice, outcome, actor=actor)]


async def _final_usage(sub: Subscription, now: datetime) -> tuple[str | None, list[InvoiceLine]]:
    """The id minted for the final invoice and its usage lines: the metered items' for
    [period start, min(now, period end)) in an active (or past due) period, and the usage
    a change or a pause left waiting."""
    s = sub.state
    metered = metered_items(sub)
    start, end = s.current_period_start, s.current_period_end
    billed = s.status in (S.ACTIVE, S.PAST_DUE) and start is not None and end is not None
    if not (metered and billed) and not s.unbilled_usage:
        return None, []
    used_to = min(now, end) if end is not None else now
    invoice_id = sub.new_id("in")
    # The items' own usage: an active (or past due) period that has begun; a paused one
    # has only the usage left waiting (up to the pause).
    from_ = start if billed and start is not None and used_to > start else None
    return invoice_id, await arrears_lines(sub, invoice_id, metered, from_, used_to)


async def _refund(
    sub: Subscription, lines: list[InvoiceLine], actor: str | None, invoice_id: str | None
) -> list[EventDraft]:
    """A credit note for `lines` (a net credit), refunded over the period's payments."""
    s = sub.state
    subscription_id = sub.inp.subscription_id
    start = min(line.period_start for line in lines)
    end = max(line.period_end for line in lines)
    note = sub.invoice("subscription_cancel_refund", lines, start, end, invoice_id)
    payments = [(p.invoice_id, p.amount) for p in s.period_payments]
    # Nothing paid in cash this period: the activity records the note, refunds nothing.
    parts = allocate_refund(-note.total, payments) or [(note.id, 0)]
    # What the cash payments cannot take back may have been paid from the balance: that
    # returns there (runs with a balance only; the activity caps it at what the balance
    # paid this period).
    to_balance = -note.total - sum(amount for _, amount in parts) if sub.items_on() else 0
    refunded = credited = 0
    for n, (invoice_id, amount) in enumerate(parts):
        result = await sub.refund(
            RefundRequest(
                invoice_id=invoice_id,
                subscription_id=subscription_id,
                amount=amount,
                refund_key=f"{subscription_id}:{note.id}:{invoice_id}:refund",
                credit_note=note,
                to_balance=to_balance if n == 0 else 0,
                period_start=s.current_period_start,
            )
        )
        refunded += result.refunded
        credited += result.to_balance
    s.refunded += refunded
    return [
        sub.event(
            "invoice.refunded",
            invoice_id=parts[0][0],
            refunded_invoices=[invoice_id for invoice_id, _ in parts],
            credit_note_id=note.id,
            credit=-note.total,
            amount=refunded,
            to_balance=credited,
            actor=actor,
        )
    ]
