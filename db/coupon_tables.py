"""SQLModel tables of coupons: their terms, promotion codes, and each redemption."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, Numeric
from sqlmodel import Field, SQLModel

from db.columns import utc as _utc


class Coupon(SQLModel, table=True):
    """A discount's terms. `times_redeemed` only ever moves through the conditional updates
    of `db/repositories/coupons.py`, so it never passes `max_redemptions`."""

    __tablename__ = "coupons"

    id: str = Field(primary_key=True)
    name: str
    percent_off: Decimal | None = Field(default=None, sa_type=Numeric(5, 2))
    amount_off: int | None = Field(default=None, sa_type=BigInteger)
    currency: str | None = None
    duration: str  # once | repeating | forever
    duration_in_months: int | None = None
    applies_to_plans: list[str] | None = Field(default=None, sa_type=JSON)
    max_redemptions: int | None = None
    times_redeemed: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    redeem_by: datetime | None = _utc(default=None)
    deleted_at: datetime | None = _utc(default=None)  # no new redemptions after
    created_at: datetime = _utc()


class PromotionCode(SQLModel, table=True):
    """A customer-facing code over a coupon; `code_key` (the code in lower case) is unique."""

    __tablename__ = "promotion_codes"

    id: str = Field(primary_key=True)
    code: str
    code_key: str = Field(unique=True)
    coupon_id: str = Field(index=True)
    active: bool = True  # False once deactivated
    max_redemptions: int | None = None
    times_redeemed: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    expires_at: datetime | None = _utc(default=None)
    customer_id: str | None = None
    first_time_transaction: bool = False
    minimum_amount: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = _utc()


class CouponRedemption(SQLModel, table=True):
    """One redemption counted against a coupon (and code): `reserved` while the request that
    made it is still deciding (its subscription may yet be refused), `redeemed` once kept.
    A reservation is released (deleted, its counts given back) if the request fails."""

    __tablename__ = "coupon_redemptions"

    id: str = Field(primary_key=True)
    coupon_id: str = Field(index=True)
    promotion_code_id: str | None = Field(default=None, index=True)
    customer_id: str = Field(index=True)
    subscription_id: str = Field(index=True)
    status: str  # reserved | redeemed
    created_at: datetime = _utc()
