"""Plain-text email templates for customer notifications.

Each template gets an `EmailContext` built by `compose` (`activities/email_messages.py`)
from the event and the read model. Only what a customer needs goes in: names, plan,
amounts, dates, what to do. No payment-method details, card data, API keys or internal
secrets ever reach a template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from string import Template


@dataclass(frozen=True)
class EmailContext:
    customer_name: str
    plan_name: str
    amount: str  # formatted, e.g. "12.00 USD"
    subscription_id: str
    trial_end: datetime | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None
    invoice_id: str | None = None
    next_retry_at: datetime | None = None
    # payment_failed: "scheduled" (next_retry_at known), "later" (retries continue, date not
    # known here), or "payment_method" (no retry until a new payment method is saved).
    retry: str = "later"
    has_payment_method: bool = True
    reason: str | None = None
    occurred_at: datetime | None = None
    # The invoice's lines, (description, formatted amount): what a receipt lists.
    lines: tuple[tuple[str, str], ...] = ()


def _date(value: datetime | None) -> str:
    return value.strftime("%B %-d, %Y") if value else "soon"


_FOOTER = """
Subscription: $subscription_id

-- 
Recur billing. You receive this email because you have a subscription with us.
"""

_TRIAL_WILL_END = Template(
    """Hi $name,

Your free trial of $plan ends on $trial_end.

$payment_note

You can change your plan or cancel at any time before then and you will not be charged.
"""
    + _FOOTER
)

_PAYMENT_FAILED = Template(
    """Hi $name,

We could not collect $amount for your $plan subscription (invoice $invoice_id).

What to do: update your payment method in your account settings. As soon as a new
payment method is saved we retry the payment automatically.

$retry_note
"""
    + _FOOTER
)

_RENEWAL_RECEIPT = Template(
    """Hi $name,

Thank you! Your $plan subscription has renewed.
$items
Amount paid: $amount
Invoice: $invoice_id
Service period: $period_start to $period_end

Your next renewal is on $period_end.
"""
    + _FOOTER
)

_CANCELED = Template(
    """Hi $name,

Your $plan subscription was canceled on $canceled_on$reason_note.
Your access to the plan's features has ended.

We are sorry to see you go. You can subscribe again at any time.
"""
    + _FOOTER
)

_REASONS = {
    "requested": " as requested",
    "cancel_at_period_end": " at the end of the billing period, as requested",
    "dunning_exhausted": " because we could not collect payment",
    "trial_ended_without_payment_method": " because no payment method was on file when "
    "the trial ended",
}


# Line breaks (with the blanks around them) and other control characters, TAB aside.
_BREAKS = re.compile("[ \t]*[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]+[ \t]*")


def _line_list(lines: tuple[tuple[str, str], ...]) -> str:
    """The invoice's lines, one per row with the amount right-aligned after it."""
    if not lines:
        return ""
    width = max(len(one_line(description)) for description, _ in lines)
    rows = [f"  {one_line(d).ljust(width)}  {amount}" for d, amount in lines]
    return "\n" + "\n".join(rows) + "\n"


def one_line(text: str) -> str:
    """`text` as a single line: a subject is a header, where a line break would end it."""
    return _BREAKS.sub(" ", text)


def render(template: str, ctx: EmailContext) -> tuple[str, str]:
    """Subject and body of `template` for `ctx`. The subject is always one line, whatever
    the names in it hold (the API refuses line breaks in names; older rows may have them)."""
    subject, body = _render(template, ctx)
    return one_line(subject), body


def _render(template: str, ctx: EmailContext) -> tuple[str, str]:
    common = {
        "name": ctx.customer_name,
        "plan": ctx.plan_name,
        "amount": ctx.amount,
        "subscription_id": ctx.subscription_id,
        "invoice_id": ctx.invoice_id or "-",
    }
    if template == "trial_will_end":
        note = (
            f"On that day we will charge {ctx.amount} to the payment method on file and your "
            "subscription continues without interruption."
            if ctx.has_payment_method
            else "There is no payment method on file yet: add one before the trial ends to "
            "keep your access."
        )
        body = _TRIAL_WILL_END.substitute(common, trial_end=_date(ctx.trial_end), payment_note=note)
        return f"Your {ctx.plan_name} trial ends on {_date(ctx.trial_end)}", body
    if template == "payment_failed":
        if ctx.retry == "scheduled" and ctx.next_retry_at:
            retry = (
                f"If nothing changes we will try again on {_date(ctx.next_retry_at)}. "
                "Your access continues in the meantime."
            )
        elif ctx.retry == "payment_method":
            retry = "We will not retry this payment until a new payment method is added."
        else:
            retry = "If nothing changes we will try again automatically over the coming days."
        body = _PAYMENT_FAILED.substitute(common, retry_note=retry)
        return f"Action needed: your payment for {ctx.plan_name} failed", body
    if template == "renewal_receipt":
        body = _RENEWAL_RECEIPT.substitute(
            common,
            items=_line_list(ctx.lines),
            period_start=_date(ctx.period_start),
            period_end=_date(ctx.period_end),
        )
        return f"Receipt: {ctx.plan_name} renewed ({ctx.amount})", body
    if template == "canceled":
        body = _CANCELED.substitute(
            common,
            canceled_on=_date(ctx.occurred_at),
            reason_note=_REASONS.get(ctx.reason or "", ""),
        )
        return f"Your {ctx.plan_name} subscription was canceled", body
    raise ValueError(f"unknown email template {template!r}")
