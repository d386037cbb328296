"""Webhook endpoints, the delivery log, and the record of emails sent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import EmailNotification, Event, WebhookDelivery, WebhookEndpoint
from domain.notifications import EndpointFilter


async def active_endpoints(session: AsyncSession) -> Sequence[WebhookEndpoint]:
    query = select(WebhookEndpoint).where(col(WebhookEndpoint.disabled).is_(False))
    return (await session.exec(query.order_by(col(WebhookEndpoint.created_at)))).all()


async def endpoint_filters(session: AsyncSession) -> list[EndpointFilter]:
    """The enabled endpoints as routing sees them, in registration order."""
    return [
        EndpointFilter(id=ep.id, events=list(ep.events), created_at=ep.created_at)
        for ep in await active_endpoints(session)
    ]


async def all_endpoints(session: AsyncSession) -> Sequence[WebhookEndpoint]:
    query = select(WebhookEndpoint).order_by(col(WebhookEndpoint.created_at))
    return (await session.exec(query)).all()


async def events_by_id(session: AsyncSession, event_ids: Sequence[str]) -> dict[str, Event]:
    rows = (await session.exec(select(Event).where(col(Event.id).in_(event_ids)))).all()
    return {row.id: row for row in rows}


async def previous_event(session: AsyncSession, event: Event, event_type: str) -> Event | None:
    """The latest event of `event_type` on the same subscription at or before `event`."""
    query = (
        select(Event)
        .where(
            Event.subscription_id == event.subscription_id,
            Event.type == event_type,
            col(Event.seq) <= event.seq,
        )
        .order_by(col(Event.seq).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


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


async def email_record(session: AsyncSession, event_id: str) -> EmailNotification | None:
    return await session.get(EmailNotification, event_id)


async def record_email_attempt(
    session: AsyncSession,
    *,
    event_id: str,
    template: str,
    customer_id: str,
    recipient: str,
    subject: str,
    status: str,
    error: str | None,
    now: datetime,
) -> int:
    """Upsert the email row for one event with this attempt's result; returns attempts so far."""
    statement = insert(EmailNotification).values(
        event_id=event_id,
        template=template,
        customer_id=customer_id,
        recipient=recipient,
        subject=subject,
        status=status,
        attempts=1,
        last_error=error,
        created_at=now,
        sent_at=now if status == "sent" else None,
    )
    table = EmailNotification.__table__  # type: ignore[attr-defined]
    upsert = statement.on_conflict_do_update(
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
    ).returning(table.c.attempts)
    return int((await session.execute(upsert)).scalar_one())
