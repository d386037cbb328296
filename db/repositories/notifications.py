"""Webhook endpoints, the delivery log, and the record of emails sent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.delivery_tables import EmailNotification, WebhookDelivery, WebhookEndpoint
from db.models import Customer, Event, Invoice, Plan, Subscription


def add_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    session.add(endpoint)


async def get_endpoint(session: AsyncSession, endpoint_id: str) -> WebhookEndpoint | None:
    return await session.get(WebhookEndpoint, endpoint_id)


def disable_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    """Deliveries to it stop (pending ones are skipped); its delivery log stays."""
    endpoint.disabled = True
    session.add(endpoint)


async def all_endpoints(session: AsyncSession) -> Sequence[WebhookEndpoint]:
    query = select(WebhookEndpoint).order_by(col(WebhookEndpoint.created_at))
    return (await session.exec(query)).all()


async def events_by_id(session: AsyncSession, event_ids: Sequence[str]) -> dict[str, Event]:
    rows = (await session.exec(select(Event).where(col(Event.id).in_(event_ids)))).all()
    return {row.id: row for row in rows}


async def next_events(session: AsyncSession, event: Event, *, limit: int) -> Sequence[Event]:
    """The events right after `event` on the same subscription's timeline."""
    query = (
        select(Event)
        .where(Event.subscription_id == event.subscription_id, col(Event.seq) > event.seq)
        .order_by(col(Event.seq))
        .limit(limit)
    )
    return (await session.exec(query)).all()


async def delivery(
    session: AsyncSession, endpoint_id: str, event_id: str
) -> WebhookDelivery | None:
    query = select(WebhookDelivery).where(
        WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.event_id == event_id
    )
    return (await session.exec(query)).first()


async def record_attempt(
    session: AsyncSession,
    *,
    endpoint_id: str,
    event: Event,
    status: str,
    status_code: int | None,
    error: str | None,
    now: datetime,
    count_attempt: bool = True,
) -> int:
    """Upsert the delivery row with this attempt's result; returns attempts so far."""
    statement = insert(WebhookDelivery).values(
        endpoint_id=endpoint_id,
        event_id=event.id,
        event_type=event.type,
        subscription_id=event.subscription_id,
        status=status,
        attempts=1 if count_attempt else 0,
        last_status_code=status_code,
        last_error=error,
        created_at=now,
        updated_at=now,
        delivered_at=now if status == "delivered" else None,
    )
    table = WebhookDelivery.__table__  # type: ignore[attr-defined]
    upsert = statement.on_conflict_do_update(
        index_elements=["endpoint_id", "event_id"],
        set_={
            "status": statement.excluded.status,
            "attempts": table.c.attempts + (1 if count_attempt else 0),
            "last_status_code": statement.excluded.last_status_code,
            "last_error": statement.excluded.last_error,
            "updated_at": statement.excluded.updated_at,
            "delivered_at": func.coalesce(table.c.delivered_at, statement.excluded.delivered_at),
        },
    ).returning(table.c.attempts)
    return int((await session.execute(upsert)).scalar_one())


async def deliveries(
    session: AsyncSession,
    endpoint_id: str,
    *,
    status: str | None = None,
    event_id: str | None = None,
    subscription_id: str | None = None,
    limit: int = 100,
) -> Sequence[WebhookDelivery]:
    """The delivery log of one endpoint, newest first."""
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    if event_id:
        query = query.where(WebhookDelivery.event_id == event_id)
    if subscription_id:
        query = query.where(WebhookDelivery.subscription_id == subscription_id)
    return (await session.exec(query.order_by(col(WebhookDelivery.id).desc()).limit(limit))).all()


@dataclass(frozen=True)
class EmailSource:
    """Everything an event's email is made of, read in one query."""

    event: Event
    # Of the event's email record: None (never tried), "sending" (an attempt began and never
    # recorded its result: it may have been sent), "sent", "retrying" or "failed".
    status: str | None
    customer: Customer | None
    subscription: Subscription | None
    plan: Plan | None
    # The invoice the email is about: the failed one, or the one a renewal paid.
    invoice: Invoice | None

    @property
    def sent(self) -> bool:
        """An email for this event is already recorded as sent."""
        return self.status == "sent"


_PAID = aliased(Event)
# For a renewal or a recovery: the invoice of the latest `invoice.paid` before it.
_PAID_INVOICE = (
    select(_PAID.data["invoice_id"].as_string())
    .where(
        col(_PAID.subscription_id) == col(Event.subscription_id),
        col(_PAID.type) == "invoice.paid",
        col(_PAID.seq) <= col(Event.seq),
    )
    .order_by(col(_PAID.seq).desc())
    .limit(1)
    .correlate(Event)
    .scalar_subquery()
)
_EMAIL_INVOICE_ID = case(
    (col(Event.type) == "invoice.payment_failed", Event.data["invoice_id"].as_string()),
    (col(Event.type).in_(["subscription.renewed", "subscription.recovered"]), _PAID_INVOICE),
    else_=None,
)


async def email_sources(session: AsyncSession, event_ids: Sequence[str]) -> dict[str, EmailSource]:
    """The events, with their customer, subscription, plan, invoice and whether an email was
    already sent for them: one round trip for a whole batch of emails."""
    query: Any = (
        sa_select(Event, col(EmailNotification.status), Customer, Subscription, Plan, Invoice)
        .outerjoin(EmailNotification, col(EmailNotification.event_id) == col(Event.id))
        .outerjoin(Customer, col(Customer.id) == col(Event.customer_id))
        .outerjoin(Subscription, col(Subscription.id) == col(Event.subscription_id))
        .outerjoin(Plan, col(Plan.id) == col(Subscription.plan_id))
        .outerjoin(Invoice, col(Invoice.id) == _EMAIL_INVOICE_ID)
        .where(col(Event.id).in_(event_ids))
    )
    rows = (await session.execute(query)).all()
    return {
        event.id: EmailSource(event, status, customer, sub, plan, invoice)
        for event, status, customer, sub, plan, invoice in rows
    }


@dataclass(frozen=True)
class EmailAttempt:
    event_id: str
    template: str
    customer_id: str
    recipient: str
    subject: str
    status: str  # sending | sent | retrying | failed
    error: str | None


def _email_upsert() -> Any:
    table = EmailNotification.__table__  # type: ignore[attr-defined]
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=["event_id"],
        set_={
            "template": statement.excluded.template,
            "recipient": statement.excluded.recipient,
            "subject": statement.excluded.subject,
            "status": statement.excluded.status,
            "attempts": table.c.attempts + 1,
            "last_error": statement.excluded.last_error,
            "sent_at": func.coalesce(table.c.sent_at, statement.excluded.sent_at),
        },
    ).returning(table.c.event_id, table.c.attempts)


_RECORD_EMAILS = _email_upsert()


def _sending_upsert() -> Any:
    table = EmailNotification.__table__  # type: ignore[attr-defined]
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=["event_id"],
        set_={
            "recipient": statement.excluded.recipient,
            "subject": statement.excluded.subject,
            "status": statement.excluded.status,
        },
        where=table.c.status != "sent",
    )


_MARK_SENDING = _sending_upsert()


async def mark_emails_sending(
    session: AsyncSession, attempts: Sequence[EmailAttempt], now: datetime
) -> None:
    """Before the relay sees them: these emails are being sent (status "sending", attempts
    unchanged). A record still "sending" at the next attempt tells that attempt it may be
    sending the email again. One statement for the batch; a sent record is left alone."""
    if not attempts:
        return
    rows = [
        {
            "event_id": a.event_id,
            "template": a.template,
            "customer_id": a.customer_id,
            "recipient": a.recipient,
            "subject": a.subject,
            "status": "sending",
            "attempts": 0,
            "last_error": None,
            "created_at": now,
            "sent_at": None,
        }
        for a in attempts
    ]
    await session.execute(_MARK_SENDING, rows)


async def record_email_attempts(
    session: AsyncSession, attempts: Sequence[EmailAttempt], now: datetime
) -> dict[str, int]:
    """Upsert the email rows of these attempts (one statement); returns attempts so far."""
    if not attempts:
        return {}
    rows = [
        {
            "event_id": a.event_id,
            "template": a.template,
            "customer_id": a.customer_id,
            "recipient": a.recipient,
            "subject": a.subject,
            "status": a.status,
            "attempts": 1,
            "last_error": a.error,
            "created_at": now,
            "sent_at": now if a.status == "sent" else None,
        }
        for a in attempts
    ]
    return {event_id: n for event_id, n in (await session.execute(_RECORD_EMAILS, rows)).all()}
