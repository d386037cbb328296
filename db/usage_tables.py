"""SQLModel tables of usage-based billing: meters, usage events, the running aggregates per
(subscription, meter, period), the values a `unique_count` meter has seen, and the usage
limits of plan features.

Raw events are written once and read by nothing on a hot path: ingestion keeps each period's
aggregate current as events arrive (`db/repositories/usage.py`), and the entitlement check
and the period's usage line read that one row.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Numeric, UniqueConstraint
from sqlmodel import Field, SQLModel

from db.columns import utc as _utc


class Meter(SQLModel, table=True):
    __tablename__ = "meters"

    id: str = Field(primary_key=True)
    name: str
    event_name: str = Field(index=True)
    aggregation: str  # sum | count | max | last | unique_count
    value_property: str | None = None
    unique_property: str | None = None
    created_at: datetime = _utc()


class PlanFeatureLimit(SQLModel, table=True):
    """A plan feature granted up to `usage_limit` of a meter's quantity per period."""

    __tablename__ = "plan_feature_limits"

    plan_id: str = Field(primary_key=True)
    feature: str = Field(primary_key=True)
    meter_id: str = Field(index=True)
    usage_limit: int = Field(sa_type=BigInteger)
    position: int = 0  # where the feature stands in the plan's list


class UsageEventRow(SQLModel, table=True):
    """One accepted usage event; a (customer, transaction id) is stored once."""

    __tablename__ = "usage_events"
    __table_args__ = (UniqueConstraint("customer_id", "transaction_id"),)

    id: str = Field(primary_key=True)
    customer_id: str
    transaction_id: str
    event_name: str
    timestamp: datetime = _utc()
    properties: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = _utc()


class UsageAggregate(SQLModel, table=True):
    """A meter's running aggregate for one subscription period (`domain.usage.Running`).
    `closed_at` is set once the period is invoiced: no event counts into it after that."""

    __tablename__ = "usage_aggregates"

    subscription_id: str = Field(primary_key=True)
    meter_id: str = Field(primary_key=True)
    period_start: datetime = Field(sa_type=DateTime(timezone=True), primary_key=True)
    period_end: datetime = _utc()
    customer_id: str = Field(index=True)
    aggregation: str  # the meter's, so an update knows how to fold a new event in
    quantity: Decimal = Field(default=Decimal(0), sa_column=Column(Numeric, nullable=False))
    events: int = Field(default=0, sa_type=BigInteger)
    last_at: datetime | None = _utc(default=None)
    last_transaction: str | None = None
    invoice_id: str | None = None  # the invoice that billed this period's usage
    closed_at: datetime | None = _utc(default=None)
    updated_at: datetime = _utc()


class UsageUniqueValue(SQLModel, table=True):
    """A value a `unique_count` meter has seen in one subscription period."""

    __tablename__ = "usage_unique_values"

    subscription_id: str = Field(primary_key=True)
    meter_id: str = Field(primary_key=True)
    period_start: datetime = Field(sa_type=DateTime(timezone=True), primary_key=True)
    value: str = Field(primary_key=True)
