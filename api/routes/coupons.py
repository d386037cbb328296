"""Coupons: create, read, and delete (no new redemptions; applied discounts continue)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, Query

from api.coupon_schemas import CouponCreate, CouponOut
from api.deps import CurrentKey, ProductKey, SessionDep
from api.errors import not_found
from api.idempotency import IdempotencyDep
from api.ids import new_id
from api.services.coupons import coupon_not_found, coupon_out
from db.coupon_tables import Coupon
from db.repositories import coupons as repo
from domain import errors
from domain.coupons import Duration, check_terms

router = APIRouter(prefix="/v1/coupons", tags=["coupons"])
log = structlog.get_logger()


@router.post("", status_code=201, response_model=CouponOut)
async def create_coupon(
    body: CouponCreate, idem: IdempotencyDep, session: SessionDep, key: ProductKey
) -> object:
    """Create a coupon (admin, product): a percent or an amount off, for how long, on which
    plans, how many times and until when it may be redeemed."""
    if (replay := await idem.replay()) is not None:
        return replay
    check_terms(
        percent_off=body.percent_off,
        amount_off=body.amount_off,
        currency=body.currency,
        duration=Duration(body.duration),
        duration_in_months=body.duration_in_months,
    )
    plans = list(dict.fromkeys(body.applies_to_plans)) if body.applies_to_plans else None
    if plans and (missing := await repo.missing_plans(session, plans)):
        raise not_found("plan", missing[0])
    now = datetime.now(UTC)
    coupon = Coupon(
        id=body.id or new_id("coupon"),
        name=body.name,
        percent_off=body.percent_off,
        amount_off=body.amount_off,
        currency=body.currency,
        duration=body.duration,
        duration_in_months=body.duration_in_months,
        applies_to_plans=plans,
        max_redemptions=body.max_redemptions,
        redeem_by=body.redeem_by,
        created_at=now,
    )
    if not await repo.add_coupon(session, coupon):
        raise errors.ALREADY_EXISTS(f"A coupon with id {coupon.id!r} exists")
    log.info("coupon.created", coupon_id=coupon.id, actor=key.actor)
    return await idem.respond(201, coupon_out(coupon, now))


@router.get("", response_model=list[CouponOut])
async def list_coupons(
    session: SessionDep, _: CurrentKey, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> object:
    now = datetime.now(UTC)
    return [coupon_out(c, now) for c in await repo.list_coupons(session, limit=limit)]


@router.get("/{coupon_id}", response_model=CouponOut)
async def get_coupon(coupon_id: str, session: SessionDep, _: CurrentKey) -> object:
    coupon = await repo.get_coupon(session, coupon_id)
    if coupon is None:
        raise coupon_not_found(coupon_id)
    return coupon_out(coupon, datetime.now(UTC))


@router.delete("/{coupon_id}", response_model=CouponOut)
async def delete_coupon(coupon_id: str, session: SessionDep, key: ProductKey) -> object:
    """Stop new redemptions of the coupon; discounts already applied continue."""
    if await repo.get_coupon(session, coupon_id) is None:
        raise coupon_not_found(coupon_id)
    now = datetime.now(UTC)
    await repo.delete_coupon(session, coupon_id, now)
    coupon = await repo.get_coupon(session, coupon_id, fresh=True)
    assert coupon is not None  # coupons are never removed
    log.info("coupon.deleted", coupon_id=coupon_id, actor=key.actor)
    return coupon_out(coupon, now)
