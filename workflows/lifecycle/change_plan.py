"""Plan changes: upgrade, downgrade or switch interval, now or at the period end.

A run with items (ITEMS_AND_BALANCE) changes plans as the one-item case of a change of
items (`lifecycle/items.py`); what follows is how runs from before items do it.

A change is validated and priced before anything happens (`workflows.plan_changes` holds
the rules and the arithmetic); the validator and the handler price it the same way, so a
rejected request leaves no trace. Asking for the current plan drops a scheduled change.
During a trial nothing was charged: the plan is swapped and the trial-end invoice is at
the new price. A change at the period end is scheduled (a new request replaces it) and
applied by the renewal. A change now is charged now, deferred to the next invoice, or not
prorated, as quoted; a declined charge leaves the change unapplied. A preview answers
with the invoice the change would charge now, else the next renewal, and changes nothing.
"""

from __future__ import annotations

from domain import errors
from domain.contracts import (
    ChargeOutcome,
    EventDraft,
    InvoiceDraft,
    PendingChangeView,
    PlanSnapshot,
)
from domain.errors import DomainError
from domain.item_quote import Billing, ChangeQuote
from domain.items import Item
from domain.status import SubscriptionStatus as S
from workflows.errors import rejected
from workflows.invoicing import opening_line
from workflows.lifecycle import items
from workflows.lifecycle.context import Subscription, record_payment
from workflows.messages import ChangePlanRequest, ChangePlanResult
from workflows.patches import ITEMS_AND_BALANCE
from workflows.plan_changes import (
    InvoicePlan,
    anchor_after_change,
    check_trial_change,
    decide,
    preview_invoice,
    quote_change,
    upcoming_renewal,
)


def validate_change_plan(sub: Subscription, req: ChangePlanRequest) -> None:
    if sub.patches.expects(ITEMS_AND_BALANCE):
        items.validate(sub, _as_items(sub, req, "si_requested"))
        return
    if _drops_pending_change(sub, req):
        return  # asking for the current plan cancels the scheduled change
    if sub.status == S.TRIALING:
        _check_trial_change(sub, req)
        return
    _quote(sub, req)


async def request_change(sub: Subscription, req: ChangePlanRequest) -> ChangePlanResult:
    if sub.items_on():
        return await items.request(sub, _as_items(sub, req, sub.new_id("si")))
    s = sub.state
    if _drops_pending_change(sub, req):
        if req.preview:
            return _result(sub, req, preview=_upcoming_renewal(sub, s.plan))
        return await _drop_pending_change(sub, req)
    if s.status == S.TRIALING:
        _check_trial_change(sub, req)
        return await _change_during_trial(sub, req)
    quote = _quote(sub, req)
    if req.preview:
        return _result(sub, req, quote, preview=_quote_preview(sub, quote, req))
    if quote.billing == Billing.AT_PERIOD_END:
        return await _schedule_change(sub, req, quote)
    return await _change_now(sub, req, quote)


def _as_items(sub: Subscription, req: ChangePlanRequest, item_id: str) -> items.Change:
    """The plan change as a change of items: the first item moves to the plan, in its
    quantity (its id kept when the plan is the same); the other items stay."""
    current = sub.items()
    first = Item(id=item_id, plan=req.plan, quantity=current[0].quantity)
    return items.Change(
        items=[first, *current[1:]],
        when=req.when,
        proration=req.proration,
        preview=req.preview,
        actor=req.actor,
        plan_change=True,
    )


def _drops_pending_change(sub: Subscription, req: ChangePlanRequest) -> bool:
    return req.plan.plan_id == sub.state.plan.plan_id and sub.state.pending_plan is not None


def _check_trial_change(sub: Subscription, req: ChangePlanRequest) -> None:
    s = sub.state
    limit = sub.inp.policy.plan_change.max_changes_per_period
    try:
        check_trial_change(s.plan, req.plan, s.changes_this_period, limit)
    except DomainError as err:
        raise rejected(err) from None


def _quote(sub: Subscription, req: ChangePlanRequest) -> ChangeQuote:
    """Decide and price the change, or reject it (validator and handler alike)."""
    s = sub.state
    try:
        decision = decide(
            s.plan,
            req.plan,
            s.status,
            s.changes_this_period,
            req.when,
            req.proration,
            sub.inp.policy.plan_change,
        )
    except DomainError as err:
        raise rejected(err) from None
    now = sub.clock.now()
    start, end = s.current_period_start, s.current_period_end
    if start is None or end is None or not start <= now < end:
        raise rejected(errors.PERIOD_RENEWING("The billing period is renewing; try again"))
    return quote_change(
        s.plan,
        req.plan,
        decision,
        period_start=start,
        period_end=end,
        anchor=s.billing_cycle_anchor,
        now=now,
        prices=(sub.prorated(s.plan), sub.prorated(req.plan)),
    )


def _quote_preview(sub: Subscription, quote: ChangeQuote, req: ChangePlanRequest) -> InvoiceDraft:
    s = sub.state
    assert s.current_period_end is not None
    return _draft(
        sub,
        preview_invoice(
            quote,
            s.plan,
            req.plan,
            s.billing_cycle_anchor,
            s.current_period_end,
            s.pending_proration_lines,
        ),
    )


def _upcoming_renewal(sub: Subscription, plan: PlanSnapshot) -> InvoiceDraft:
    s = sub.state
    assert s.current_period_end is not None
    return _draft(
        sub,
        upcoming_renewal(
            s.plan, plan, s.billing_cycle_anchor, s.current_period_end, s.pending_proration_lines
        ),
    )


def _draft(sub: Subscription, content: InvoicePlan) -> InvoiceDraft:
    """A previewed invoice: built like a real one, never stored or charged."""
    return sub.build_invoice(
        content.reason, content.lines, content.start, content.end, preview=True
    )[0]


def _result(
    sub: Subscription,
    req: ChangePlanRequest,
    quote: ChangeQuote | None = None,
    *,
    invoice: InvoiceDraft | None = None,
    preview: InvoiceDraft | None = None,
) -> ChangePlanResult:
    decision = quote.decision if quote else None
    return items.answer(sub, req.preview, decision, invoice=invoice, preview=preview)


async def _drop_pending_change(sub: Subscription, req: ChangePlanRequest) -> ChangePlanResult:
    s = sub.state
    dropped = s.pending_change.plan_id if s.pending_change else None
    s.pending_plan, s.pending_change = None, None
    sub.dirty = True
    await sub.sync(
        [sub.event("subscription.plan_change_canceled", plan_id=dropped, actor=req.actor)]
    )
    return _result(sub, req)


async def _change_during_trial(sub: Subscription, req: ChangePlanRequest) -> ChangePlanResult:
    """Nothing was charged yet: swap the plan; the trial-end invoice is at the new price."""
    s = sub.state
    assert s.trial_end is not None
    anchor = anchor_after_change(s.plan, req.plan, s.billing_cycle_anchor, s.trial_end)
    if req.preview:
        line, end = opening_line(req.plan, anchor, s.trial_end)
        preview = sub.build_invoice("subscription_cycle", [line], s.trial_end, end, preview=True)[0]
        return _result(sub, req, preview=preview)
    old = s.plan
    s.plan = req.plan
    s.billing_cycle_anchor = anchor
    s.changes_this_period += 1
    sub.dirty = True
    await sub.sync(
        [
            sub.event(
                "subscription.plan_changed",
                from_plan=old.plan_id,
                to_plan=req.plan.plan_id,
                when="now",
                during_trial=True,
                actor=req.actor,
            )
        ],
        features=req.plan.features,
    )
    return _result(sub, req)


async def _schedule_change(
    sub: Subscription, req: ChangePlanRequest, quote: ChangeQuote
) -> ChangePlanResult:
    """A downgrade (by default) waits for the period end; a new request replaces it."""
    s = sub.state
    replaced = s.pending_change.plan_id if s.pending_change else None
    s.pending_plan = req.plan
    s.pending_change = PendingChangeView(
        plan_id=req.plan.plan_id, effective_at=quote.effective_at, proration="none"
    )
    s.changes_this_period += 1
    sub.dirty = True
    await sub.sync(
        [
            sub.event(
                "subscription.plan_change_scheduled",
                from_plan=s.plan.plan_id,
                to_plan=req.plan.plan_id,
                effective_at=quote.effective_at,
                kind=quote.decision.kind.value,
                replaces=replaced,
                actor=req.actor,
            )
        ]
    )
    return _result(sub, req, quote)


async def _change_now(
    sub: Subscription, req: ChangePlanRequest, quote: ChangeQuote
) -> ChangePlanResult:
    s = sub.state
    old = s.plan
    events: list[EventDraft] = []
    invoice: InvoiceDraft | None = None
    outcome: ChargeOutcome | None = None
    if quote.billing == Billing.INVOICE_NOW and quote.lines:
        invoice, outcome, paid, carried = await sub.charge_for_change(
            quote.lines, quote.invoice_start, quote.invoice_end, req.actor
        )
        events += paid
        if carried is not None:
            s.pending_proration_lines.append(carried)
    elif quote.billing == Billing.NEXT_INVOICE:
        s.pending_proration_lines += quote.lines
    replaced = s.pending_change.plan_id if s.pending_change else None
    s.plan = req.plan
    s.pending_plan, s.pending_change = None, None
    if quote.decision.new_anchor:
        s.billing_cycle_anchor = quote.anchor
        sub.start_period(quote.period_start, quote.period_end)
    else:
        s.changes_this_period += 1
    if invoice is not None and outcome is not None:
        # After the new period started: this payment is for it.
        record_payment(s, invoice, outcome)
    sub.dirty = True
    events.append(
        sub.event(
            "subscription.plan_changed",
            from_plan=old.plan_id,
            to_plan=req.plan.plan_id,
            when="now",
            kind=quote.decision.kind.value,
            proration=quote.decision.proration.value,
            invoice_id=invoice.id if invoice else None,
            deferred_lines=len(quote.lines) if quote.billing == Billing.NEXT_INVOICE else 0,
            replaces=replaced,
            actor=req.actor,
        )
    )
    await sub.sync(events, features=req.plan.features)
    return _result(sub, req, quote, invoice=invoice)
