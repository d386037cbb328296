"""Delivering one event to one target: a signed webhook POST, or the customer's email.

`Deliveries` does one attempt and says what happened: delivered/sent, `retrying` (try
again later), `failed` (the last attempt failed: given up), `duplicate` (done before) or
`skipped` (nothing to send). Each attempt is safe to repeat: a delivery already recorded as
delivered (an email recorded as sent) is not made again, and every attempt is recorded in
the delivery log (the email record). The outbox dispatcher (`activities/dispatcher.py`)
calls it. Nothing secret (signing secrets, API keys, card data) goes into a log line or an
email.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.utils import format_datetime
from typing import Any, cast

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from activities.email_templates import EmailContext, render
from activities.smtp_relay import SmtpRelay
from activities.webhook_signing import signed_headers
from activities.webhook_transport import GuardedTransport, Resolver, TargetRefused, system_resolver
from config import Settings
from db.delivery_tables import WebhookEndpoint as Endpoint
from db.engine import session_factory
from db.models import Customer, Event, Subscription
from db.repositories import invoices as invoice_repo
from db.repositories import notifications as repo
from domain.money import format_amount
from domain.notifications import EMAIL_TEMPLATES, NotificationOutcome
from domain.timestamps import rfc3339, with_z_times

log = structlog.get_logger()

USER_AGENT = "Recur-Webhooks/1.0"
# What the delivery log says of a target the address policy refused: nothing about the
# network (which address, which kind), so that the log is no probe of it.
REFUSED_TARGET = "target address not allowed"


def webhook_body(event: Event) -> bytes:
    """The JSON body POSTed for one event (the same bytes on every attempt)."""
    payload = {
        "id": event.id,
        "type": event.type,
        "created": rfc3339(event.occurred_at),
        "data": {
            # Times in one form with the API's (stored data keeps the workflow's `+00:00`).
            **cast(dict[str, object], with_z_times(event.data)),
            "subscription_id": event.subscription_id,
            "customer_id": event.customer_id,
        },
    }
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class Deliveries:
    """One delivery attempt at a time, to a webhook endpoint or by email (see module doc)."""

    def __init__(
        self, engine: AsyncEngine, settings: Settings, *, resolver: Resolver = system_resolver
    ) -> None:
        self._sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        self._settings = settings
        self._resolver = resolver
        self._http: httpx.AsyncClient | None = None
        self._smtp: SmtpRelay | None = None
        # Emails sent again whose earlier attempt may have sent them (see `emails`).
        self.possible_resends = 0
        # During a batch, the emails the relay accepted are recorded at least this often
        # (seconds): over a remote relay (tens of milliseconds a message) that is right
        # after each one; over a fast local one a whole batch is one write, since a write
        # costs the worker more CPU than a send.
        self.record_every = 0.05

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                transport=GuardedTransport(
                    allow_private=self._settings.allows_private_webhook_targets,
                    resolver=self._resolver,
                ),
                timeout=self._settings.webhook_timeout_seconds,
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )
        return self._http

    def _relay(self) -> SmtpRelay:
        if self._smtp is None:
            self._smtp = SmtpRelay(self._settings.effective_smtp_url)
        return self._smtp

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._smtp is not None:
            await asyncio.to_thread(self._smtp.close)
            self._smtp = None

    # ------------------------------------------------------------------ webhooks

    async def webhook(
        self, endpoint_id: str, event_id: str, *, attempt: int, max_attempts: int
    ) -> NotificationOutcome:
        async with self._sessions() as session:
            endpoint = await repo.get_endpoint(session, endpoint_id)
            event = (await repo.events_by_id(session, [event_id])).get(event_id)
            if endpoint is None or event is None:
                return NotificationOutcome(status="skipped")
            done = await repo.delivery(session, endpoint_id, event_id)
            if done is not None and done.status == "delivered":
                return NotificationOutcome(status="duplicate", attempts=done.attempts)
            if endpoint.disabled:
                await self._record(session, endpoint, event, "skipped", None, None, count=False)
                return NotificationOutcome(status="skipped")
            url, secret = endpoint.url, endpoint.secret

        body = webhook_body(event)
        headers = {
            "Content-Type": "application/json",
            **signed_headers(secret, event.id, datetime.now(UTC), body),
            "Recur-Event-Id": event.id,
            "Recur-Event-Type": event.type,
            "Recur-Delivery-Attempt": str(attempt),
        }
        status_code: int | None = None
        error: str | None = None
        refused = False
        try:
            response = await self._client().post(url, content=body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except TargetRefused as exc:
            # Given up at once: the URL was refused when registered, or resolves to an
            # address it may not reach now. The operator's log says which kind.
            error, refused = REFUSED_TARGET, True
            log.warning("webhook.target_refused", endpoint_id=endpoint_id, reason=exc.reason)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {str(exc)[:200]}" if str(exc) else type(exc).__name__

        status = _status(error, "delivered", refused or attempt >= max_attempts)
        async with self._sessions() as session:
            attempts = await self._record(session, endpoint, event, status, status_code, error)
        log.info(
            "webhook.attempt",
            endpoint_id=endpoint_id,
            event_id=event.id,
            event_type=event.type,
            attempt=attempt,
            status=status,
            status_code=status_code,
        )
        return NotificationOutcome(
            status=status, attempts=attempts, status_code=status_code, error=error
        )

    async def _record(
        self,
        session: AsyncSession,
        endpoint: Endpoint,
        event: Event,
        status: str,
        status_code: int | None,
        error: str | None,
        *,
        count: bool = True,
    ) -> int:
        attempts = await repo.record_attempt(
            session,
            endpoint_id=endpoint.id,
            event=event,
            status=status,
            status_code=status_code,
            error=error,
            now=datetime.now(UTC),
            count_attempt=count,
        )
        await session.commit()
        return attempts

    # ------------------------------------------------------------------ email

    async def emails(
        self, batch: Sequence[tuple[str, int]], *, max_attempts: int
    ) -> dict[str, NotificationOutcome]:
        """One attempt at each (event id, attempt number) of a batch: the sources are read
        in one query and the messages go out over one relay connection.

        At least once, never silently twice: the batch is marked "sending" (one statement)
        before the relay sees it, and the emails the relay accepted are recorded as sent
        within `record_every` of it. A worker that dies mid-batch thus leaves unrecorded only
        the emails accepted in that last moment and the one in flight; those (and the ones
        not reached) are sent again when the claim expires, with the same Message-ID, and
        logged as `email.possible_resend`. SMTP cannot do better: the relay may accept a
        message and the process die before the record is written."""
        outcomes: dict[str, NotificationOutcome] = {}
        prepared: list[tuple[Mail, int]] = []
        in_doubt: set[str] = set()
        async with self._sessions() as session:
            sources = await repo.email_sources(session, [event_id for event_id, _ in batch])
            for event_id, attempt in batch:
                source = sources.get(event_id)
                mail = await self._mail(session, source) if source and not source.sent else None
                if source is not None and source.sent:
                    outcomes[event_id] = NotificationOutcome(status="duplicate")
                elif mail is None:
                    outcomes[event_id] = NotificationOutcome(status="skipped")
                else:
                    prepared.append((mail, attempt))
                    if source is not None and source.status == "sending":
                        in_doubt.add(event_id)
            if not prepared:
                return outcomes
            sending = [_attempt(mail, "sending", None) for mail, _ in prepared]
            await repo.mark_emails_sending(session, sending, datetime.now(UTC))
            await session.commit()  # and the connection goes back to the pool while sending
            for mail, _ in prepared:
                if mail.event_id in in_doubt:
                    self.possible_resends += 1
                    log.warning(
                        "email.possible_resend",
                        event_id=mail.event_id,
                        template=mail.template,
                        customer_id=mail.customer_id,
                        message_id=mail.message["Message-ID"],
                    )
            # The batch's rows are claimed for the lease, counted from about now: past half
            # of it the rest wait for the next attempt, so no other worker claims an email
            # this one is still sending (a relay that takes its time over each message).
            stop_at = time.monotonic() + self._settings.outbox_lease_seconds / 2
            while prepared:
                left = stop_at - time.monotonic()
                messages = [mail.message for mail, _ in prepared]
                errors: list[str | None] = (
                    await asyncio.to_thread(self._send_for, messages, min(self.record_every, left))
                    if left > 0
                    else [_NOT_SENT] * len(prepared)
                )
                done, prepared = prepared[: len(errors)], prepared[len(errors) :]
                results = [
                    (
                        _attempt(mail, _status(error, "sent", attempt >= max_attempts), error),
                        attempt,
                    )
                    for (mail, attempt), error in zip(done, errors, strict=True)
                ]
                outcomes.update(await self._record_emails(session, results))
        return outcomes

    async def _record_emails(
        self, session: AsyncSession, results: Sequence[tuple[repo.EmailAttempt, int]]
    ) -> dict[str, NotificationOutcome]:
        """Record these attempts (one statement, committed); their outcomes."""
        counts = await repo.record_email_attempts(
            session, [result for result, _ in results], datetime.now(UTC)
        )
        await session.commit()
        outcomes: dict[str, NotificationOutcome] = {}
        for result, attempt in results:
            log.info(
                "email.attempt",
                event_id=result.event_id,
                template=result.template,
                customer_id=result.customer_id,
                attempt=attempt,
                status=result.status,
                error=result.error,
            )
            outcomes[result.event_id] = NotificationOutcome(
                status=result.status, attempts=counts[result.event_id], error=result.error
            )
        return outcomes

    def _send_for(self, messages: Sequence[Message], seconds: float) -> list[str | None]:
        """Send messages in order until `seconds` have passed (one at least); the error of
        each one sent, or None. Blocking: run it in a thread."""
        errors: list[str | None] = []
        start = time.monotonic()
        for message in messages:
            try:
                self._relay().send(message)
                errors.append(None)
            except (smtplib.SMTPException, OSError) as exc:
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            if time.monotonic() - start >= seconds:
                break
        return errors

    async def _mail(self, session: AsyncSession, source: repo.EmailSource) -> Mail | None:
        """The email for an event, or None when it has none (no template, no address)."""
        event, customer = source.event, source.customer
        template = EMAIL_TEMPLATES.get(event.type)
        if template is None or customer is None or not customer.email:
            return None
        subject, text = render(template, await self._context(session, source, customer))
        # A compat32 Message, not EmailMessage: the same message for a tenth of the CPU
        # (the modern policy parses every header it is given), which counts when a
        # renewal storm sends a receipt per renewal.
        message = Message()
        message.set_payload(text, _UTF8_QP)  # text/plain; charset="utf-8"
        message["From"] = self._settings.email_from
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
        self, session: AsyncSession, source: repo.EmailSource, customer: Customer
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
            "trial_end": _parse_time(event.data.get("trial_end"))
            or (sub.trial_end if sub else None),
            "has_payment_method": bool(customer.default_payment_method),
            "reason": event.data.get("reason")
            if isinstance(event.data.get("reason"), str)
            else None,
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


# The error of an email a batch did not reach before half its claim had passed.
_NOT_SENT = "not sent: the batch ran out of time"

# Quoted-printable: the body stays readable on the wire (and to a search of a mail log).
_UTF8_QP = Charset("utf-8")
_UTF8_QP.header_encoding = QP
_UTF8_QP.body_encoding = QP


def _header(value: str) -> str:
    """ASCII as it is; anything else as RFC 2047 encoded words."""
    return value if value.isascii() else Header(value, _UTF8_QP).encode()


def _attempt(mail: Mail, status: str, error: str | None) -> repo.EmailAttempt:
    return repo.EmailAttempt(
        event_id=mail.event_id,
        template=mail.template,
        customer_id=mail.customer_id,
        recipient=mail.recipient,
        subject=mail.subject,
        status=status,
        error=error,
    )


@dataclass(frozen=True)
class Mail:
    event_id: str
    template: str
    customer_id: str
    recipient: str
    subject: str
    message: Message


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


def _status(error: str | None, success: str, last: bool) -> str:
    if error is None:
        return success
    return "failed" if last else "retrying"
