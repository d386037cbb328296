"""Request and response bodies of the v1 API. Inputs forbid unknown fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from api import input_guard
from domain.plan_change import ChangeWhen, ProrationBehavior
from domain.plans import duplicate_features
from domain.timestamps import with_z_times

Amount = Annotated[int, Field(ge=0, le=99_999_999_999, strict=True)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$", to_lower=True)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Feature = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]
Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{3,200}$")]


# Every time the API takes lies in this range: far enough for any billing horizon, near
# enough that periods, trials and retries computed from it stay representable (a clock at
# year 9999 overflowed in the workflow and failed it for good).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _to_utc(value: datetime) -> datetime:
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is out of range in UTC") from None
    if not EARLIEST <= value < LATEST:
        raise PydanticCustomError(
            "time_out_of_range",
            "times must be from {earliest} and before {latest}",
            {"earliest": EARLIEST.isoformat(), "latest": LATEST.isoformat()},
        )
    return value


# A time with an offset, normalised to UTC (naive, unrepresentable or out-of-range times
# are a 422).
UtcTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def _distinct_features(features: list[Any]) -> list[Any]:
    keys = [f if isinstance(f, str) else f.key for f in features]
    if repeated := duplicate_features(keys):
        raise PydanticCustomError(
            "duplicate_features", "features are repeated: {repeated}", {"repeated": repeated}
        )
    return features


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        """One check for every string of every request body, before any field is read."""
        if (where := input_guard.first_forbidden(data)) is not None:
            raise PydanticCustomError(input_guard.CODE, input_guard.message(where))
        return data


MeterId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,100}$")]


class FeatureLimit(Input):
    """A feature granted up to `limit` of a meter's quantity per billing period."""

    key: Feature
    limit: Annotated[int, Field(ge=0, le=10**15, strict=True)]
    meter_id: MeterId


class PlanCreate(Input):
    name: Name
    amount: Amount
    currency: Currency
    interval: Literal["month", "year"]
    interval_count: Annotated[int, Field(ge=1, le=36, strict=True)] = 1
    trial_days: Annotated[int, Field(ge=0, le=730, strict=True)] = 0
    features: Annotated[
        list[Feature | FeatureLimit], Field(max_length=100), AfterValidator(_distinct_features)
    ] = Field(default_factory=list)
    creator_id: Name | None = None
    # Metered: `amount` per started `package_size` units of the meter's quantity in a
    # period, billed in arrears.
    usage_type: Literal["licensed", "metered"] = "licensed"
    meter_id: MeterId | None = None
    package_size: Annotated[int, Field(ge=1, le=10**9, strict=True)] = 1

    @model_validator(mode="after")
    def _metered_terms(self) -> PlanCreate:
        if self.usage_type == "metered" and self.meter_id is None:
            raise ValueError("meter_id is required for a metered plan")
        if self.usage_type == "licensed" and (self.meter_id or self.package_size != 1):
            raise ValueError("meter_id and package_size are for metered plans only")
        return self


class PlanOut(BaseModel):
    id: str
    name: str
    amount: int
    currency: str
    interval: str
    interval_count: int
    trial_days: int
    features: list[str | dict[str, Any]]
    creator_id: str | None
    created_at: datetime
    usage_type: str = "licensed"
    meter_id: str | None = None
    package_size: int = 1


class CustomerCreate(Input):
    email: EmailStr
    name: Name | None = None
    payment_method: Token | None = None


class PaymentMethodUpdate(Input):
    payment_method: Token


class CustomerOut(BaseModel):
    id: str
    email: str
    name: str | None
    stripe_customer_id: str | None
    default_payment_method: str | None
    created_at: datetime
    # Credit available per currency (minor units, never below 0).
    balances: dict[str, int] = Field(default_factory=dict)


class BalanceTransactionIn(Input):
    # Positive adds credit, negative uses it; never 0.
    amount: Annotated[int, Field(ge=-99_999_999_999, le=99_999_999_999, strict=True)]
    currency: Currency
    description: Name


class BalanceTransactionOut(BaseModel):
    id: str
    amount: int
    currency: str
    type: str
    invoice_id: str | None
    description: str
    balance_after: int
    created_at: datetime


Quantity = Annotated[int, Field(ge=1, le=10_000, strict=True)]


class ItemIn(Input):
    """A plan and its quantity (1 when left out); a metered plan takes no quantity."""

    plan_id: Token
    quantity: Quantity | None = None


Items = Annotated[list[ItemIn], Field(min_length=1, max_length=20)]


class SubscriptionCreate(Input):
    """Either `plan_id` (and `quantity`) or `items`."""

    customer_id: Token
    plan_id: Token | None = None
    quantity: Quantity | None = None
    items: Items | None = None
    trial_days: Annotated[int, Field(ge=0, le=730, strict=True)] | None = None
    test_clock_id: Token | None = None
    billing_cycle_anchor: UtcTime | None = None
    # A discount from the start: a coupon, or a promotion code's text (any case); not both.
    coupon_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{3,100}$")] | None = None
    promotion_code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{3,50}$")] | None = (
        None
    )

    @model_validator(mode="after")
    def _one_discount(self) -> SubscriptionCreate:
        if self.coupon_id is not None and self.promotion_code is not None:
            raise ValueError("give coupon_id or promotion_code, not both")
        return self

    @model_validator(mode="after")
    def _plan_or_items(self) -> SubscriptionCreate:
        if (self.plan_id is None) == (self.items is None):
            raise ValueError("pass either plan_id or items")
        if self.items is not None and self.quantity is not None:
            raise ValueError("quantity goes with plan_id; each item has its own")
        return self

    def item_specs(self) -> list[tuple[str, int | None]]:
        """(plan_id, quantity or None when not given) of each item asked for, in order."""
        if self.items is not None:
            return [(item.plan_id, item.quantity) for item in self.items]
        assert self.plan_id is not None
        return [(self.plan_id, self.quantity)]


class UpdateItemsIn(Input):
    items: Items
    when: ChangeWhen | None = None
    proration: ProrationBehavior | None = None
    preview: bool = False


class ChangePlanIn(Input):
    plan_id: Token
    when: ChangeWhen | None = None
    proration: ProrationBehavior | None = None
    preview: bool = False


class CancelIn(Input):
    at_period_end: bool = True
    refund: Literal["none", "prorated"] = "none"


class PauseIn(Input):
    resumes_at: UtcTime | None = None


class ExtendTrialIn(Input):
    trial_end: UtcTime


class InvoiceLineOut(BaseModel):
    kind: str
    description: str
    amount: int
    period_start: datetime
    period_end: datetime


class PaymentAttemptOut(BaseModel):
    attempt_number: int
    status: str
    amount: int
    idempotency_key: str
    stripe_payment_intent_id: str | None
    decline_code: str | None
    failure_code: str | None
    failure_message: str | None
    actor: str | None
    created_at: datetime
    completed_at: datetime | None


class InvoiceOut(BaseModel):
    id: str
    # `credit_note`: money owed back (billing_reason subscription_cancel_refund, a negative
    # total), status `credited`; every other one is an `invoice`.
    type: Literal["invoice", "credit_note"]
    subscription_id: str
    customer_id: str
    status: str
    billing_reason: str
    total: int
    currency: str
    period_start: datetime
    period_end: datetime
    created_at: datetime
    paid_at: datetime | None
    lines: list[InvoiceLineOut]
    attempts: list[PaymentAttemptOut]


class EventOut(BaseModel):
    id: str
    type: str
    subscription_id: str | None
    customer_id: str | None
    data: dict[str, object]
    actor: str | None
    occurred_at: datetime

    @field_serializer("data")
    def _data_times_with_z(self, data: dict[str, object]) -> dict[str, object]:
        # Stored data keeps the workflow's `+00:00`; the API writes every time with `Z`.
        return cast(dict[str, object], with_z_times(data))


class EntitlementOut(BaseModel):
    feature: str
    subscription_id: str
    plan_id: str
    active_until: datetime | None


class EntitlementCheck(BaseModel):
    """`limit`, `used` and `remaining` are present for a feature with a usage limit."""

    entitled: bool
    active_until: datetime | None
    limit: int | None = None
    used: float | None = None
    remaining: float | None = None
