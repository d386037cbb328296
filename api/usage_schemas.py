"""Request and response bodies of meters and usage events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.schemas import Input, MeterId, Name, UtcTime

EventName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]
PropertyName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]
TransactionId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
CustomerRef = Annotated[str, StringConstraints(min_length=1, max_length=200)]

MAX_BATCH = 1000


class MeterCreate(Input):
    id: MeterId | None = None
    name: Name
    event_name: EventName
    aggregation: Literal["sum", "count", "max", "last", "unique_count"]
    value_property: PropertyName | None = None
    unique_property: PropertyName | None = None

    @model_validator(mode="after")
    def _property_fits(self) -> MeterCreate:
        needs_value = self.aggregation in ("sum", "max", "last")
        if needs_value != (self.value_property is not None):
            raise ValueError(
                f"value_property is {'required' if needs_value else 'not allowed'} "
                f"for aggregation {self.aggregation}"
            )
        needs_unique = self.aggregation == "unique_count"
        if needs_unique != (self.unique_property is not None):
            raise ValueError(
                f"unique_property is {'required' if needs_unique else 'not allowed'} "
                f"for aggregation {self.aggregation}"
            )
        return self


class MeterOut(BaseModel):
    id: str
    name: str
    event_name: str
    aggregation: str
    value_property: str | None
    unique_property: str | None
    created_at: datetime


class UsageEventFields(BaseModel):
    """A usage event's fields, without the control-character walk of `Input` (for a batch
    whose raw body cannot hold one: `api.routes.usage_events`)."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: TransactionId
    customer_id: CustomerRef
    event_name: EventName
    timestamp: UtcTime | None = None
    properties: Annotated[dict[PropertyName, Any], Field(max_length=50)] = Field(
        default_factory=dict
    )


class UsageEventIn(UsageEventFields, Input):
    """A usage event (control characters refused, as in every request body)."""


class UsageBatchIn(BaseModel):
    """Each event is validated on its own (a bad one is rejected, never its neighbours)."""

    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[Any], Field(min_length=1, max_length=MAX_BATCH)]


class UsageEventAccepted(BaseModel):
    id: str = Field(description="The stored event's id (the first one's, for a duplicate)")
    duplicate: bool


class Rejected(BaseModel):
    index: int
    code: str
    message: str


class UsageBatchOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[Rejected]


class UsageLine(BaseModel):
    meter_id: str
    plan_id: str
    period_start: datetime
    period_end: datetime
    # An integer when whole (`domain.usage.as_number`): 1200, not 1200.0.
    quantity: int | float
    amount: int
