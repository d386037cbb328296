"""What the workflow and the usage activity exchange about a period's usage (plain DTOs:
no table models cross into workflow code)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class MeteredItem(BaseModel):
    """A metered plan of a subscription (an item, once subscriptions have items)."""

    model_config = ConfigDict(frozen=True)

    plan_id: str
    meter_id: str
    amount: Annotated[int, Field(ge=0, strict=True)]
    package_size: Annotated[int, Field(ge=1, strict=True)] = 1
    item_id: str | None = None


class UsageLinesRequest(BaseModel):
    """The usage lines of one invoice for one period. `close`: the grace for late events is
    over; the period's aggregates are frozen for this invoice, and an event for the period
    is refused (`period_closed`) from then on. `period_end` may be earlier than the
    aggregate's (a plan change or a cancel ends the item's usage there)."""

    subscription_id: str
    customer_id: str
    invoice_id: str
    period_start: datetime
    period_end: datetime
    items: list[MeteredItem]
    close: bool = False


class UsagePeriod(BaseModel):
    """Metered items whose usage of [start, end) one invoice bills."""

    items: list[MeteredItem]
    start: datetime
    end: datetime


class UsagePreviewRequest(BaseModel):
    """The usage so far of a subscription's next usage billing, for a preview: read from
    the running aggregates, never claimed or closed."""

    subscription_id: str
    stretches: list[UsagePeriod]


class UsageLineDraft(BaseModel):
    """An invoice line of kind `usage`. `quantity` is the exact decimal as text."""

    plan_id: str
    meter_id: str
    item_id: str | None
    quantity: str
    packages: int
    amount: int
    description: str
    period_start: datetime
    period_end: datetime
    closed: bool
