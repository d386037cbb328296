"""Changing a subscription's items: `update_items`, and `change_plan` as its one-item case.

A change is validated and priced before anything happens (`domain.item_change` decides,
`domain.item_quote` prices); the validator and the handler price it the same way, so a
rejected request leaves no trace. By default an increase of the recurring total applies
now and its per-item prorations are invoiced at once, paid before the change takes effect
(a declined charge leaves the items as they were: 409 `payment_failed`); a decrease waits
for the period end as a pending change (a new request replaces it; asking for the current
items drops it), unless asked for now, when its net credit goes to the customer's balance.
A new period length applies now with a new anchor. During a trial nothing was charged: the
items change now, unprorated. A preview answers with the invoice the change would make
(now, else the next renewal) and changes nothing.

A plan change keeps what it always answered: `same_plan`, no change at all while
`past_due`, an equal price applied now, the policy's proration of a downgrade applied now,
and its `subscription.plan_…` events (beside `subscription.updated`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain import errors
from domain.contracts import ChargeOutcome, EventDraft, InvoiceDraft, ItemView, PendingChangeView
from domain.errors import DomainError
from domain.invoices import InvoiceLine
from domain.item_change import decide_items_change
from domain.item_quote import Billing, ChangeQuote, anchor_after, period_from, quote_items_change
from domain.items import Item, carry_item_ids, opening_lines, period_lines, same_items
from domain.plan_change import ChangeDecision, ChangeWhen, ProrationBehavior
from domain.status import SubscriptionStatus as S
from workflows.errors import rejected
from workflows.lifecycle.context import Subscription, record_payment
from workflows.lifecycle.usage import ChangeNow, leave_usage, renewal_usage_so_far
from workflows.messages import ChangePlanResult, UpdateItemsRequest


@dataclass(frozen=True)
class Change:
    """A requested change of items; `plan_change` when it came as `change_plan`."""

    items: list[Item]
    when: ChangeWhen | None = None
    proration: ProrationBehavior | None = None
    preview: bool = False
    actor: str | None = None
    plan_change: bool = False


def from_request(req: UpdateItemsRequest) -> Change:
    return Change(req.items, req.when, req.proration, req.preview, req.actor)


def validate(sub: Subscription, change: Change) -> None:
    new = _new_items(sub, change)
    if _drops_pending(sub, new):
        return
    _quote(sub, change, new)


async def request(sub: Subscription, change: Change) -> ChangePlanResult:
    s = sub.state
    new = _new_items(sub, change)
    if _drops_pending(sub, new):
        if change.preview:
            usage = await renewal_usage_so_far(sub)
            return _result(sub, change, preview=_upcoming_renewal(sub, new, [], usage))
        return await _drop_pending(sub, change)
    decision, quote = _quote(sub, change, new)
    if s.status == S.TRIALING:
        return await _change_during_trial(sub, change, new, decision)
    assert quote is not None
    if change.preview:
        return _result(sub, change, decision, preview=await _preview(sub, quote, new))
    if quote.billing == Billing.AT_PERIOD_END:
        return await _schedule(sub, change, new, quote)
    return await _change_now(sub, change, new, quote)


def _new_items(sub: Subscription, change: Change) -> list[Item]:
    """The requested items, those of plans already on the subscription with their ids."""
    return carry_item_ids(sub.items(), change.items)


def _drops_pending(sub: Subscription, new: list[Item]) -> bool:
    s = sub.state
    pending = s.pending_items is not None or s.pending_plan is not None
    return pending and same_items(sub.items(), new)


def _quote(
    sub: Subscription, change: Change, new: list[Item]
) -> tuple[ChangeDecision, ChangeQuote | None]:
    """Decide and price the change, or reject it (validator and handler alike); no quote
    during a trial (nothing to prorate)."""
    s = sub.state
    policy = sub.inp.policy.plan_change
    try:
        if change.plan_change and s.status == S.PAST_DUE:
            raise errors.SUBSCRIPTION_PAST_DUE(
                "Settle the outstanding invoice before changing plans"
            )
        decision = decide_items_change(
            sub.items(),
            new,
            s.status,
            s.changes_this_period,
            change.when,
            change.proration,
            policy,
            lateral_when=ChangeWhen.NOW if change.plan_change else ChangeWhen.PERIOD_END,
            decrease_proration=None if change.plan_change else ProrationBehavior.ALWAYS_INVOICE,
            same_code="same_plan" if change.plan_change else "same_items",
        )
    except DomainError as err:
        raise rejected(err) from None
    if s.status == S.TRIALING:
        return decision, None
    now = sub.clock.now()
    start, end = s.current_period_start, s.current_period_end
    if start is None or end is None or not start <= now < end:
        raise rejected(errors.PERIOD_RENEWING("The billing period is renewing; try again"))
    quote = quote_items_change(
        sub.items(),
        new,
        decision,
        period_start=start,
        period_end=end,
        anchor=s.billing_cycle_anchor,
        now=now,
        price=sub.item_price,
    )
    return decision, quote


async def _preview(sub: Subscription, quote: ChangeQuote, new: list[Item]) -> InvoiceDraft:
    """The invoice the change charges now, else the next renewal as it would be (with the
    usage so far of the period it bills in arrears)."""
    s = sub.state
    if quote.billing == Billing.INVOICE_NOW and quote.lines:
        return sub.build_invoice(
            "subscription_update",
            quote.lines,
            quote.invoice_start,
            quote.invoice_end,
            preview=True,
        )[0]
    if quote.billing == Billing.AT_PERIOD_END:
        usage = await renewal_usage_so_far(sub)
        lines = [*s.pending_proration_lines, *quote.lines, *usage]
        return sub.build_invoice(
            "subscription_cycle", lines, quote.invoice_start, quote.invoice_end, preview=True
        )[0]
    # The change applies now: the renewal bills the new items, at the end of the current
    # period, or of the new one when the period restarts (nothing to invoice now: metered
    # items alone, or proration `none`).
    if quote.decision.new_anchor:
        period = (quote.period_start, quote.period_end)
        usage = await renewal_usage_so_far(sub, ChangeNow(new, sub.clock.now(), period))
        return _upcoming_renewal(sub, new, [], usage, renews=(quote.period_end, quote.anchor))
    usage = await renewal_usage_so_far(sub, ChangeNow(new, sub.clock.now()))
    extra = quote.lines if quote.billing == Billing.NEXT_INVOICE else []
    return _upcoming_renewal(sub, new, extra, usage)


def _upcoming_renewal(
    sub: Subscription,
    items: list[Item],
    extra: list[InvoiceLine],
    usage: list[InvoiceLine],
    renews: tuple[datetime, datetime] | None = None,
) -> InvoiceDraft:
    """The next renewal on `items`: waiting and `extra` lines, the next period, then the
    `usage` of the period ending. `renews`: when and on which anchor, when not at the
    current period's end on the current anchor."""
    s = sub.state
    assert s.current_period_end is not None
    at, anchor = renews or (s.current_period_end, s.billing_cycle_anchor)
    start, end = period_from(items, anchor_after(sub.items(), items, anchor, at), at)
    lines = [*s.pending_proration_lines, *extra, *period_lines(items, start, end), *usage]
    return sub.build_invoice("subscription_cycle", lines, start, end, preview=True)[0]


def answer(
    sub: Subscription,
    previewed: bool,
    decision: ChangeDecision | None = None,
    *,
    invoice: InvoiceDraft | None = None,
    preview: InvoiceDraft | None = None,
) -> ChangePlanResult:
    """The answer to a change of items or of plan (`previewed`: it was a preview)."""
    return ChangePlanResult(
        subscription=sub.view(),
        decision=decision.summary() if decision else None,
        invoice=invoice,
        invoice_preview=preview,
        preview=previewed,
    )


def _result(
    sub: Subscription,
    change: Change,
    decision: ChangeDecision | None = None,
    *,
    invoice: InvoiceDraft | None = None,
    preview: InvoiceDraft | None = None,
) -> ChangePlanResult:
    return answer(sub, change.preview, decision, invoice=invoice, preview=preview)


def _shown(items: list[Item]) -> list[dict[str, object]]:
    """Items as events show them."""
    return [{"id": i.id, "plan_id": i.plan.plan_id, "quantity": i.quantity} for i in items]


def _views(items: list[Item]) -> list[ItemView]:
    return [ItemView(id=i.id, plan_id=i.plan.plan_id, quantity=i.quantity) for i in items]


def _applied(
    sub: Subscription, old: list[Item], new: list[Item], **data: object
) -> list[EventDraft]:
    """`subscription.updated` with the items before and after; when the first item's plan
    changed, `subscription.plan_changed` before it."""
    actor = data.pop("actor", None)
    assert actor is None or isinstance(actor, str)
    events: list[EventDraft] = []
    if old[0].plan.plan_id != new[0].plan.plan_id:
        events.append(
            sub.event(
                "subscription.plan_changed",
                from_plan=old[0].plan.plan_id,
                to_plan=new[0].plan.plan_id,
                actor=actor,
                **data,
            )
        )
    events.append(
        sub.event(
            "subscription.updated",
            items_before=_shown(old),
            items_after=_shown(new),
            actor=actor,
            **data,
        )
    )
    return events


def _set_items(sub: Subscription, new: list[Item]) -> None:
    s = sub.state
    s.items = list(new)
    # The subscription's plan is its first licensed item's (the first item's if all are
    # metered; every item was licensed before metered items existed).
    s.plan = next((i.plan for i in new if not i.plan.metered), new[0].plan)
    s.pending_items, s.pending_plan, s.pending_change = None, None, None


def _replaced(sub: Subscription) -> str | None:
    pending = sub.state.pending_change
    return pending.plan_id if pending else None


async def _drop_pending(sub: Subscription, change: Change) -> ChangePlanResult:
    s = sub.state
    dropped = s.pending_change
    s.pending_items, s.pending_plan, s.pending_change = None, None, None
    sub.dirty = True
    if change.plan_change:
        event = sub.event(
            "subscription.plan_change_canceled",
            plan_id=dropped.plan_id if dropped else None,
            actor=change.actor,
        )
    else:
        event = sub.event(
            "subscription.update_canceled",
            items=[i.model_dump() for i in dropped.items or []] if dropped else [],
            actor=change.actor,
        )
    await sub.sync([event])
    return _result(sub, change)


async def _change_during_trial(
    sub: Subscription, change: Change, new: list[Item], decision: ChangeDecision
) -> ChangePlanResult:
    """Nothing was charged yet: the items change; the trial-end invoice bills the new ones."""
    s = sub.state
    assert s.trial_end is not None
    anchor = anchor_after(sub.items(), new, s.billing_cycle_anchor, s.trial_end)
    if change.preview:
        lines, end = opening_lines(new, anchor, s.trial_end, sub.item_price)
        preview = sub.build_invoice("subscription_cycle", lines, s.trial_end, end, preview=True)[0]
        return _result(sub, change, decision, preview=preview)
    old = sub.items()
    _set_items(sub, new)
    s.billing_cycle_anchor = anchor
    s.changes_this_period += 1
    sub.dirty = True
    events = _applied(sub, old, new, when="now", during_trial=True, actor=change.actor)
    await sub.sync(events, features=sub.features())
    return _result(sub, change, decision)


async def _schedule(
    sub: Subscription, change: Change, new: list[Item], quote: ChangeQuote
) -> ChangePlanResult:
    """A decrease (by default) waits for the period end; a new request replaces it."""
    s = sub.state
    replaced = _replaced(sub)
    old = sub.items()
    s.pending_items, s.pending_plan = list(new), None
    s.pending_change = PendingChangeView(
        plan_id=new[0].plan.plan_id,
        effective_at=quote.effective_at,
        proration="none",
        items=_views(new),
    )
    s.changes_this_period += 1
    sub.dirty = True
    kind = quote.decision.kind.value
    if change.plan_change:
        event = sub.event(
            "subscription.plan_change_scheduled",
            from_plan=s.plan.plan_id,
            to_plan=new[0].plan.plan_id,
            effective_at=quote.effective_at,
            kind=kind,
            replaces=replaced,
            actor=change.actor,
        )
    else:
        event = sub.event(
            "subscription.update_scheduled",
            items_before=_shown(old),
            items_after=_shown(new),
            effective_at=quote.effective_at,
            kind=kind,
            replaces=replaced,
            actor=change.actor,
        )
    await sub.sync([event])
    return _result(sub, change, quote.decision)


async def _change_now(
    sub: Subscription, change: Change, new: list[Item], quote: ChangeQuote
) -> ChangePlanResult:
    s = sub.state
    old = sub.items()
    events: list[EventDraft] = []
    invoice: InvoiceDraft | None = None
    outcome: ChargeOutcome | None = None
    if quote.billing == Billing.INVOICE_NOW and quote.lines:
        # A net credit makes a zero invoice whose `balance` line credits the balance.
        invoice, outcome, paid, _ = await sub.charge_for_change(
            quote.lines, quote.invoice_start, quote.invoice_end, change.actor
        )
        events += paid
    elif quote.billing == Billing.NEXT_INVOICE:
        s.pending_proration_lines += quote.lines
    replaced = _replaced(sub)
    leave_usage(sub, new, sub.clock.now(), restarts=bool(quote.decision.new_anchor))
    _set_items(sub, new)
    if quote.decision.new_anchor:
        s.billing_cycle_anchor = quote.anchor
        sub.start_period(quote.period_start, quote.period_end)
    else:
        s.changes_this_period += 1
    if invoice is not None and outcome is not None:
        # After a new period started: this payment is for it.
        record_payment(s, invoice, outcome)
    sub.dirty = True
    events += _applied(
        sub,
        old,
        new,
        when="now",
        kind=quote.decision.kind.value,
        proration=quote.decision.proration.value,
        invoice_id=invoice.id if invoice else None,
        deferred_lines=len(quote.lines) if quote.billing == Billing.NEXT_INVOICE else 0,
        replaces=replaced,
        actor=change.actor,
    )
    await sub.sync(events, features=sub.features())
    return _result(sub, change, quote.decision, invoice=invoice)


def apply_pending_items(sub: Subscription, at: datetime, when: str) -> list[EventDraft]:
    """The renewal applies the items scheduled for the period end; a new period length
    restarts periods at `at`."""
    s = sub.state
    assert s.pending_items is not None
    old, new = sub.items(), list(s.pending_items)
    s.billing_cycle_anchor = anchor_after(old, new, s.billing_cycle_anchor, at)
    _set_items(sub, new)
    return _applied(sub, old, new, when=when)
