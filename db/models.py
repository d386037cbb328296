"""SQLModel tables: the catalog, the read model the workflows keep current, and API plumbing.

The workflows own subscription state; the `subscriptions` table is a projection written by
activities, guarded by `state_version` so a late retry never overwrites newer state.
Table models never enter workflow code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from db.columns import json_field as _json
from db.columns import utc as _utc


class Customer(SQLModel, table=True):
    __tablename__ = "customers"

    id: str = Field(primary_key=True)
    email: str = Field(index=True)
    name: str | None = None
    stripe_customer_id: str | None = None
    default_payment_method: str | None = None
    created_at: datetime = _utc()


class Plan(SQLModel, table=True):
    __tablename__ = "plans"

    id: str = Field(primary_key=True)
    name: str
    amount: int = Field(sa_type=BigInteger)
    currency: str
    interval: str
    interval_count: int = 1
    trial_days: int = 0
    features: list[str] = _json(list)
    creator_id: str | None = Field(default=None, index=True)
    created_at: datetime = _utc()
    # A metered plan bills `amount` per started `package_size` units of its meter's
    # quantity in a period, in arrears (db/usage_tables.py).
    usage_type: str = Field(default="licensed", sa_column_kwargs={"server_default": "licensed"})
    meter_id: str | None = None
    package_size: int = Field(
        default=1, sa_type=BigInteger, sa_column_kwargs={"server_default": "1"}
    )


class Subscription(SQLModel, table=True):
    """Read model of one SubscriptionWorkflow."""

    __tablename__ = "subscriptions"

    id: str = Field(primary_key=True)
    customer_id: str = Field(index=True)
    plan_id: str = Field(index=True)
    status: str = Field(index=True)
    current_period_start: datetime | None = _utc(default=None)
    current_period_end: datetime | None = _utc(default=None)
    billing_cycle_anchor: datetime | None = _utc(default=None)
    trial_end: datetime | None = _utc(default=None)
    cancel_at_period_end: bool = False
    canceled_at: datetime | None = _utc(default=None)
    pause: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    pending_change: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    latest_invoice_id: str | None = None
    dunning: dict[str, Any] = _json()
    test_clock_id: str | None = Field(default=None, index=True)
    created_at: datetime = _utc()
    updated_at: datetime = _utc()
    state_version: int = Field(default=0, sa_type=BigInteger)
    # The subscription's discount as the API shows it ({coupon_id, promotion_code_id, start,
    # end}); None without one.
    discount: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class SubscriptionItem(SQLModel, table=True):
    """One plan of a subscription in a quantity (seats); written with the read model."""

    __tablename__ = "subscription_items"

    id: str = Field(primary_key=True)  # si_
    subscription_id: str = Field(index=True)
    plan_id: str
    quantity: int
    position: int  # the item's place in the subscription's list
    created_at: datetime = _utc()


class BalanceTransaction(SQLModel, table=True):
    """One entry of a customer's balance ledger, per currency; append-only. Positive adds
    credit, negative uses it; the balance is the sum and never below zero. `source_key`
    names what made the entry (an invoice, a migrated credit), so a retried write is a
    no-op."""

    __tablename__ = "customer_balance_transactions"
    __table_args__ = (
        Index("ix_customer_balance_transactions_customer", "customer_id", "currency", "seq"),
    )

    id: str = Field(primary_key=True)  # cbtxn_
    # Ledger order: entries of a test-clock subscription carry the clock's time.
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), unique=True))
    customer_id: str
    currency: str
    amount: int = Field(sa_type=BigInteger)
    balance_after: int = Field(sa_type=BigInteger)
    type: str  # proration_credit | applied_to_invoice | manual | adjustment
    invoice_id: str | None = None
    subscription_id: str | None = None
    description: str
    actor: str | None = None
    source_key: str | None = Field(default=None, unique=True)
    created_at: datetime = _utc()


class Invoice(SQLModel, table=True):
    __tablename__ = "invoices"

    id: str = Field(primary_key=True)
    subscription_id: str = Field(index=True)
    customer_id: str = Field(index=True)
    status: str
    billing_reason: str
    total: int = Field(sa_type=BigInteger)
    currency: str
    period_start: datetime = _utc()
    period_end: datetime = _utc()
    created_at: datetime = _utc()
    paid_at: datetime | None = _utc(default=None)


class InvoiceLine(SQLModel, table=True):
    __tablename__ = "invoice_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "position"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    invoice_id: str = Field(index=True)
    position: int
    kind: str
    description: str
    amount: int = Field(sa_type=BigInteger)
    period_start: datetime = _utc()
    period_end: datetime = _utc()


class PaymentAttempt(SQLModel, table=True):
    """One try at collecting an invoice; written *before* Stripe is called."""

    __tablename__ = "payment_attempts"

    id: str = Field(primary_key=True)
    idempotency_key: str = Field(unique=True)
    invoice_id: str = Field(index=True)
    subscription_id: str = Field(index=True)
    attempt_number: int
    amount: int = Field(sa_type=BigInteger)
    currency: str
    payment_method: str | None = None
    status: str  # pending | succeeded | failed
    stripe_payment_intent_id: str | None = None
    decline_code: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    actor: str | None = None
    created_at: datetime = _utc()
    completed_at: datetime | None = _utc(default=None)


class Entitlement(SQLModel, table=True):
    """A feature a customer may use because of one subscription. Present = entitled."""

    __tablename__ = "entitlements"
    __table_args__ = (
        UniqueConstraint("subscription_id", "feature"),
        Index("ix_entitlements_customer_feature", "customer_id", "feature"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    customer_id: str
    feature: str
    subscription_id: str
    plan_id: str
    active_until: datetime | None = _utc(default=None)
    granted_at: datetime = _utc()


class Event(SQLModel, table=True):
    """The subscription timeline. Ids come from the workflow, so a retried write is a no-op."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_subscription_seq", "subscription_id", "seq"),)

    id: str = Field(primary_key=True)
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), unique=True))
    subscription_id: str | None = None
    customer_id: str | None = Field(default=None, index=True)
    type: str = Field(index=True)
    data: dict[str, Any] = _json()
    actor: str | None = None
    occurred_at: datetime = _utc()
    created_at: datetime = _utc()


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True)
    name: str | None = None
    role: str
    key_hash: str = Field(unique=True)
    prefix: str
    created_at: datetime = _utc()
    revoked_at: datetime | None = _utc(default=None)


class IdempotencyRecord(SQLModel, table=True):
    """An `Idempotency-Key` of a POST: reserved (by the request holding `reservation`, no
    answer yet) before the work starts, then the stored answer. Expires a day after
    `created_at`, the time it was (last) reserved."""

    __tablename__ = "idempotency_records"
    __table_args__ = (Index("ix_idempotency_records_created_at", "created_at"),)

    api_key_id: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    method: str
    path: str
    request_hash: str
    reservation: str | None = None
    status_code: int | None = None
    redacted: str | None = None  # the response field left out of the stored body (a secret)
    response_body: dict[str, Any] | list[Any] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    created_at: datetime = _utc()


class TestClock(SQLModel, table=True):
    __tablename__ = "test_clocks"
    __test__ = False  # not a pytest class

    id: str = Field(primary_key=True)
    name: str | None = None
    frozen_time: datetime = _utc()
    status: str = "ready"  # ready | advancing
    created_at: datetime = _utc()
    # While advancing: when a request or the sweeper last drove the advance.
    advance_driven_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class StripeEvent(SQLModel, table=True):
    """The inbox of inbound Stripe events: one row per event id (deduplication), written in
    the transaction that applies the event, with what is still to be done about it (signal
    the subscription's workflow, or refund a payment its ended subscription cannot use).
    `processed_at` is set once nothing is left to do; rows without it are the drainer's
    (`activities/stripe_inbox.py`): `pending` and `refunding` are due at `next_attempt_at`,
    `needs_support` waits for a person."""

    __tablename__ = "stripe_events"
    __table_args__ = (
        Index(
            "ix_stripe_events_unprocessed",
            "status",
            "next_attempt_at",
            postgresql_where=text("processed_at IS NULL"),
        ),
    )

    id: str = Field(primary_key=True)
    type: str
    received_at: datetime = _utc()
    # done | pending | refunding | refunded | needs_support
    status: str = Field(default="done", sa_column_kwargs={"server_default": "done"})
    subscription_id: str | None = None
    invoice_id: str | None = None
    payment_intent_id: str | None = None
    amount: int | None = Field(default=None, sa_type=BigInteger)
    currency: str | None = None
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_attempt_at: datetime | None = _utc(default=None)
    claimed_until: datetime | None = _utc(default=None)
    last_error: str | None = None
    # Written (and committed) before Stripe is asked to refund; one refund per key.
    refund_key: str | None = Field(default=None, unique=True)
    refund_id: str | None = None
    processed_at: datetime | None = _utc(default=None)


class SubscriptionStart(SQLModel, table=True):
    """A subscription the API created and whose workflow it still has to start: written in
    the transaction that creates the subscription, deleted once the workflow is started. A
    row left behind (Temporal unreachable, the API stopped mid-request) is started by the
    API's start sweeper."""

    __tablename__ = "subscription_starts"

    subscription_id: str = Field(primary_key=True)
    input: dict[str, Any] = _json()  # the workflow's SubscriptionInput, as JSON
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime = _utc()
