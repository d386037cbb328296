"""Request and response bodies of the operator's resources: test clocks, API keys, webhook
endpoints and their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, HttpUrl, StringConstraints, UrlConstraints

from api.auth import Role
from api.schemas import Input, Name, UtcTime
from domain.notifications import EVENT_PATTERN


class TestClockCreate(Input):
    __test__ = False
    frozen_time: UtcTime | None = None
    name: Name | None = None


class TestClockAdvance(Input):
    __test__ = False
    frozen_time: UtcTime


class AdvanceFailureOut(BaseModel):
    subscription_id: str
    code: str
    message: str


class TestClockOut(BaseModel):
    __test__ = False
    id: str
    name: str | None
    frozen_time: datetime
    status: str
    created_at: datetime
    # Subscriptions that had not caught up when the advance answered (it goes on).
    advance_failures: list[AdvanceFailureOut] = []


class ApiKeyCreate(Input):
    role: Role
    name: Name | None = None


class ApiKeyOut(BaseModel):
    id: str
    role: str
    name: str | None
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str


EventPattern = Annotated[str, StringConstraints(pattern=EVENT_PATTERN.pattern)]


class WebhookEndpointCreate(Input):
    url: Annotated[HttpUrl, UrlConstraints(max_length=2000, allowed_schemes=["http", "https"])]
    events: Annotated[list[EventPattern], Field(min_length=1, max_length=100)]
    description: Name | None = None


class WebhookEndpointOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str | None
    disabled: bool
    created_at: datetime


class WebhookEndpointCreated(WebhookEndpointOut):
    secret: str


class WebhookDeliveryOut(BaseModel):
    endpoint_id: str
    event_id: str
    event_type: str
    subscription_id: str | None
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
