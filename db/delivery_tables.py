"""SQLModel tables of outbound notifications: webhook endpoints and their deliveries,
emails, and the outbox that feeds both from the events the projection writes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Identity, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from db.columns import json_field as _json
from db.columns import utc as _utc


class WebhookEndpoint(SQLModel, table=True):
    """An outbound webhook subscriber: the URL, the event types it wants, its signing secret."""

    __tablename__ = "webhook_endpoints"

    id: str = Field(primary_key=True)
    url: str
    events: list[str] = _json(list)
    # Kept in clear text: it signs every delivery (shown to the caller only at creation).
    secret: str
    description: str | None = None
    disabled: bool = False
    created_at: datetime = _utc()


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint: the delivery log, updated by every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    endpoint_id: str
    event_id: str
    event_type: str
    subscription_id: str | None = Field(default=None, index=True)
    status: str  # retrying | delivered | failed | skipped
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime = _utc()
    updated_at: datetime = _utc()
    delivered_at: datetime | None = _utc(default=None)


class EmailNotification(SQLModel, table=True):
    """An email sent (or given up on) for one event: a retried activity does not resend it."""

    __tablename__ = "email_notifications"

    event_id: str = Field(primary_key=True)
    template: str
    customer_id: str | None = Field(default=None, index=True)
    recipient: str
    subject: str
    status: str  # sending (an attempt under way, or cut short) | sent | retrying | failed
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime = _utc()
    sent_at: datetime | None = _utc(default=None)


class NotificationOutbox(SQLModel, table=True):
    """Deliveries still to make: one row per (event, target), written in the transaction that
    writes the event, deleted once the delivery is done or given up (the delivery log and the
    email record keep the outcome). A target is a webhook endpoint id or "email"; the rows of
    one lane (subscription, target) go out one at a time, in `id` order."""

    __tablename__ = "notification_outbox"
    __table_args__ = (
        UniqueConstraint("event_id", "target"),
        Index("ix_notification_outbox_lane", "subscription_id", "target", "id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    subscription_id: str
    target: str
    event_id: str
    attempts: int = 0  # claimed this many times
    next_attempt_at: datetime = _utc()
    claimed_until: datetime | None = _utc(default=None)
    created_at: datetime = _utc()
