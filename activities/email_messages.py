"""What an event's email says: its template filled from the event, the read model and the
invoice, as a message with the same Message-ID on every attempt (`compose`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.utils import format_datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from activities.email_templates import EmailContext, render
from db.models import Customer, Event, Subscription
from db.repositories import invoices as invoice_repo
from db.repositories import notifications as repo
from domain.money import format_amount
from domain.notifications import EMAIL_TEMPLATES


@dataclass(frozen=True)
class Mail:
    event_id: str
    template: str
    customer_id: str
    recipient: str
    subject: str
    message: Message


async def compose(session: AsyncSession, source: repo.EmailSource, sender: str) -> Mail | None:
    """The email for an event, or None when it has none (no template, no address)."""
    event, customer = source.event, source.customer
    template = EMAIL_TEMPLATES.get(event.type)
    if template is None or customer is None or not customer.email:
        return None
    subject, text = render(template, await _context(session, source, customer))
    # A compat32 Message, not EmailMessage: the same message for a tenth of the CPU
    # (the modern policy parses every header it is given), which counts when a
    # renewal storm sends a receipt per renewal.
    message = Message()
    message.set_payload(text, _UTF8_QP)  # text/plain; charset="utf-8"
    message["From"] = sender
    message["To"] = _header(customer.email)
    message["Subject"] = _header(subject)
    message["Date"] = format_datetime(datetime.now(UTC))
    # The same Message-ID on every attempt, from the event alone (an event's email has
    # one recipient, its customer): a mail client or mailbox that already has a message
    # with this id can drop a resend (see `emails`).
    message["Message-ID"] = f"<{event.id}@recur>"
    message["X-Recur-Event-Id"] = event.id
    message["X-Recur-Event-Type"] = event.type
    return Mail(event.id, template, customer.id, customer.email, subject, message)


async def _context(
    session: AsyncSession, source: repo.EmailSource, customer: Customer
) -> EmailContext:
    """What the template needs, from the event, the read model and the invoice."""
    event, sub, plan, invoice = source.event, source.subscription, source.plan, source.invoice
    if invoice is not None:
        amount = format_amount(invoice.total, invoice.currency)
    elif plan is not None:
        amount = format_amount(plan.amount, plan.currency)
    else:
        amount = "-"
    ctx: dict[str, Any] = {
        "customer_name": customer.name or customer.email.split("@")[0],
        "plan_name": plan.name if plan else "membership",
        "amount": amount,
        "subscription_id": event.subscription_id or "-",
        "invoice_id": invoice.id if invoice else None,
        "period_start": invoice.period_start if invoice else None,
        "period_end": invoice.period_end if invoice else None,
        "trial_end": _parse_time(event.data.get("trial_end")) or (sub.trial_end if sub else None),
        "has_payment_method": bool(customer.default_payment_method),
        "reason": event.data.get("reason") if isinstance(event.data.get("reason"), str) else None,
        "occurred_at": event.occurred_at,
    }
    if event.type == "invoice.payment_failed":
        ctx.update(await _retry_plan(session, event, sub))
    if invoice is not None and event.type == "subscription.renewed":
        ctx["lines"] = tuple(
            (line.description, format_amount(line.amount, invoice.currency))
            for line in await invoice_repo.lines_of(session, [invoice.id])
        )
    return EmailContext(**ctx)


# Quoted-printable: the body stays readable on the wire (and to a search of a mail log).
_UTF8_QP = Charset("utf-8")
_UTF8_QP.header_encoding = QP
_UTF8_QP.body_encoding = QP


def _header(value: str) -> str:
    """ASCII as it is; anything else as RFC 2047 encoded words."""
    return value if value.isascii() else Header(value, _UTF8_QP).encode()


async def _retry_plan(
    session: AsyncSession, event: Event, sub: Subscription | None
) -> dict[str, Any]:
    """When the failed payment is tried again, as far as is known when the email goes out."""
    # The first failure of a renewal is followed by subscription.past_due with the date.
    following = await repo.next_events(session, event, limit=1)
    if following and following[0].type == "subscription.past_due":
        nxt = _parse_time(following[0].data.get("next_retry_at"))
        return {"retry": "scheduled", "next_retry_at": nxt} if nxt else {"retry": "payment_method"}
    if sub is None or sub.status == "incomplete":
        return {"retry": "payment_method"}
    dunning = sub.dunning or {}
    if dunning.get("attempts") == event.data.get("attempt"):
        if dunning.get("awaiting_payment_method"):
            return {"retry": "payment_method"}
        nxt = _parse_time(dunning.get("next_retry_at"))
        if nxt:
            return {"retry": "scheduled", "next_retry_at": nxt}
    return {"retry": "later"}


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
