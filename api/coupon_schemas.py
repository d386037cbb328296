"""Request and response bodies of coupons and promotion codes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, field_serializer, model_validator

from api.schemas import Currency, Input, Name, Token, UtcTime

CouponId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{3,100}$")]
CodeText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{3,50}$")]
Positive = Annotated[int, Field(ge=1, le=99_999_999_999, strict=True)]
Count = Annotated[int, Field(ge=1, le=1_000_000_000, strict=True)]


class CouponCreate(Input):
    id: CouponId | None = None
    name: Name
    # A JSON number (or numeric string) with at most 2 decimals, read as a Decimal: the
    # arithmetic works in hundredths of a percent, never in floats.
    percent_off: Annotated[Decimal, Field(gt=0, le=100, decimal_places=2)] | None = None
    amount_off: Positive | None = None
    currency: Currency | None = None
    duration: Literal["once", "repeating", "forever"]
    duration_in_months: Annotated[int, Field(ge=1, le=120, strict=True)] | None = None
    applies_to_plans: Annotated[list[Token], Field(min_length=1, max_length=100)] | None = None
    max_redemptions: Count | None = None
    redeem_by: UtcTime | None = None


class CouponOut(BaseModel):
    id: str
    name: str
    percent_off: Decimal | None
    amount_off: int | None
    currency: str | None
    duration: str
    duration_in_months: int | None
    applies_to_plans: list[str] | None
    max_redemptions: int | None
    times_redeemed: int
    redeem_by: datetime | None
    deleted: bool
    valid: bool
    created_at: datetime

    @field_serializer("percent_off")
    def _percent_as_number(self, value: Decimal | None) -> int | float | None:
        # A JSON number as clients expect (25, 12.5): at most 2 decimals, so the float
        # written is exactly the stored value's shortest form.
        if value is None:
            return None
        return int(value) if value == value.to_integral_value() else float(value)


class PromotionCodeCreate(Input):
    code: CodeText
    coupon_id: CouponId
    max_redemptions: Count | None = None
    expires_at: UtcTime | None = None
    customer_id: Token | None = None
    first_time_transaction: bool = False
    minimum_amount: Positive | None = None


class PromotionCodeOut(BaseModel):
    id: str
    code: str
    coupon: CouponOut
    # False once deactivated, expired or exhausted: it can no longer be redeemed.
    active: bool
    max_redemptions: int | None
    times_redeemed: int
    expires_at: datetime | None
    customer_id: str | None
    first_time_transaction: bool
    minimum_amount: int | None
    created_at: datetime


class DiscountIn(Input):
    """The discount a subscription is to hold: a coupon, or a promotion code's text."""

    coupon_id: CouponId | None = None
    promotion_code: CodeText | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> DiscountIn:
        if (self.coupon_id is None) == (self.promotion_code is None):
            raise ValueError("give exactly one of coupon_id and promotion_code")
        return self
