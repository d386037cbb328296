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
from datetime import UTC, datetime
from email.message import Message
from typing import cast

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from activities.email_messages import Mail, compose
from activities.smtp_relay import SmtpRelay
from activities.webhook_signing import signed_headers
from activities.webhook_transport import GuardedTransport, Resolver, TargetRefused, system_resolver
from config import Settings
from db.delivery_tables import WebhookEndpoint as Endpoint
from db.engine import session_factory
from db.models import Event
from db.repositories import notifications as repo
from domain.notifications import NotificationOutcome
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
                mail = (
                    await compose(session, source, self._settings.email_from)
                    if source and not source.sent
                    else None
                )
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


# The error of an email a batch did not reach before half its claim had passed.
_NOT_SENT = "not sent: the batch ran out of time"


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


def _status(error: str | None, success: str, last: bool) -> str:
    if error is None:
        return success
    return "failed" if last else "retrying"
