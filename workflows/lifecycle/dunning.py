"""Dunning: a declined invoice is retried on a schedule until it is paid or retries run out.

A renewal (or the first charge after a trial, or a resume) that is declined makes the
subscription past due, entitlements kept during the grace (design rule). A hard decline,
or no payment method, waits for a new payment method instead of retrying. Retries follow
the dunning policy from the first failure; when they run out the subscription becomes
unpaid or is canceled, as the policy says. A new payment method, or Stripe reporting an
asynchronous success, retries at once; so does an operator's `retry_payment`. An
incomplete subscription's first invoice is retried the same way, without a schedule.
"""

from __future__ import annotations

from domain import errors
from domain.contracts import ChargeOutcome, DunningView, EventDraft, InvoiceDraft
from domain.dunning import ExhaustedAction, next_retry_at
from domain.status import SubscriptionStatus as S
from workflows.errors import rejected
from workflows.lifecycle.cancel import cancel_now
from workflows.lifecycle.context import Subscription
from workflows.messages import CarriedState, PaymentMethodChanged, PaymentSucceeded

OWING = (S.PAST_DUE, S.UNPAID, S.INCOMPLETE)


async def enter_dunning(
    sub: Subscription,
    invoice: InvoiceDraft,
    outcome: ChargeOutcome,
    extra: list[EventDraft] | None = None,
) -> None:
    s = sub.state
    now = sub.clock.now()
    s.status = S.PAST_DUE
    s.open_invoice = invoice
    hard = outcome.hard_decline or outcome.no_payment_method
    s.dunning = DunningView(
        attempts=1,
        first_failure_at=now,
        awaiting_payment_method=hard,
        next_retry_at=None if hard else next_retry_at(now, 0, sub.inp.policy.dunning),
    )
    await sub.sync(
        [
            *(extra or []),
            sub.failed_event(invoice, outcome),
            sub.event("subscription.past_due", next_retry_at=s.dunning.next_retry_at),
        ],
        # Entitlements stay during the dunning grace (design rule).
        features=sub.features(),
    )


async def retry_open_invoice(sub: Subscription, actor: str | None) -> ChargeOutcome:
    s = sub.state
    invoice = s.open_invoice
    assert invoice is not None
    attempt = (s.incomplete_attempts if s.status == S.INCOMPLETE else s.dunning.attempts) + 1
    outcome = await sub.charge(invoice, attempt, actor=actor)
    if outcome.status == "paid":

        def recovered(state: CarriedState) -> list[EventDraft]:
            was = state.status
            state.status = S.ACTIVE
            state.open_invoice = None
            state.dunning = DunningView()
            type_ = "subscription.activated" if was == S.INCOMPLETE else "subscription.recovered"
            return [sub.event(type_, actor=actor)]

        await sub.settle_paid(invoice, outcome, [], recovered, actor=actor)
        return outcome
    if s.status == S.INCOMPLETE:
        s.incomplete_attempts += 1
        s.dunning.next_retry_at = None
        await sub.sync([sub.failed_event(invoice, outcome, actor=actor)])
        return outcome
    retries_done = s.dunning.attempts  # attempts includes the first failure
    s.dunning.attempts += 1
    hard = outcome.hard_decline or outcome.no_payment_method
    nxt = (
        None
        if hard
        else next_retry_at(
            s.dunning.first_failure_at or sub.clock.now(), retries_done, sub.inp.policy.dunning
        )
    )
    if nxt is None and not hard:
        await sub.sync([sub.failed_event(invoice, outcome, actor=actor)])
        await _dunning_exhausted(sub)
        return outcome
    s.dunning.awaiting_payment_method = hard
    s.dunning.next_retry_at = nxt
    await sub.sync([sub.failed_event(invoice, outcome, actor=actor)])
    return outcome


async def _dunning_exhausted(sub: Subscription) -> None:
    s = sub.state
    invoice_id = s.open_invoice.id if s.open_invoice else None
    if sub.inp.policy.dunning.exhausted_action == ExhaustedAction.UNPAID:
        s.status = S.UNPAID
        s.dunning.next_retry_at = None
        s.dunning.awaiting_payment_method = True
        await sub.sync(
            [sub.event("subscription.unpaid")],
            features=[],
            invoice_status={invoice_id: "uncollectible"} if invoice_id else None,
        )
        return
    await cancel_now(sub, reason="dunning_exhausted", actor=None, uncollectible=invoice_id)


def validate_retry_payment(sub: Subscription) -> None:
    if sub.status not in OWING or sub.state.open_invoice is None:
        raise rejected(
            errors.NOTHING_TO_RETRY(f"Subscription is {sub.status} with no open invoice")
        )


def on_payment_method_changed(sub: Subscription, msg: PaymentMethodChanged) -> None:
    """A new card: dunning and incomplete subscriptions try again at once."""
    d = sub.state.dunning
    if sub.status in OWING and sub.state.open_invoice:
        d.awaiting_payment_method = False
        d.next_retry_at = sub.clock.now()
        sub.dirty = True


def on_payment_succeeded(sub: Subscription, msg: PaymentSucceeded) -> None:
    """Stripe reported an asynchronous success (e.g. after 3-D Secure): retry at once, and
    the retry finds the invoice paid."""
    s = sub.state
    if s.open_invoice and s.open_invoice.id == msg.invoice_id:
        s.dunning.next_retry_at = sub.clock.now()
        s.dunning.awaiting_payment_method = False
        sub.dirty = True
