"""Promotion codes: customer-facing texts over a coupon, with limits of their own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, Query

from api.coupon_schemas import CodeText, CouponId, PromotionCodeCreate, PromotionCodeOut
from api.deps import CurrentKey, ProductKey, SessionDep
from api.errors import not_found
from api.idempotency import IdempotencyDep
from api.ids import new_id
from api.services.coupons import code_not_found, code_out, coupon_not_found
from db.coupon_tables import PromotionCode
from db.repositories import coupons as repo
from db.repositories import customers
from domain import errors

router = APIRouter(prefix="/v1/promotion_codes", tags=["promotion codes"])
log = structlog.get_logger()


@router.post("", status_code=201, response_model=PromotionCodeOut)
async def create_promotion_code(
    body: PromotionCodeCreate, idem: IdempotencyDep, session: SessionDep, key: ProductKey
) -> object:
    """Create a code over a coupon (admin, product); the text is unique in any case."""
    if (replay := await idem.replay()) is not None:
        return replay
    coupon = await repo.get_coupon(session, body.coupon_id)
    if coupon is None:
        raise coupon_not_found(body.coupon_id)
    if coupon.deleted_at is not None:
        raise errors.COUPON_EXPIRED(f"Coupon {coupon.id} was deleted")
    if body.customer_id is not None and await customers.get(session, body.customer_id) is None:
        raise not_found("customer", body.customer_id)
    now = datetime.now(UTC)
    code = PromotionCode(
        id=new_id("promo"),
        code=body.code,
        code_key=body.code.lower(),
        coupon_id=coupon.id,
        max_redemptions=body.max_redemptions,
        expires_at=body.expires_at,
        customer_id=body.customer_id,
        first_time_transaction=body.first_time_transaction,
        minimum_amount=body.minimum_amount,
        created_at=now,
    )
    if not await repo.add_code(session, code):
        raise errors.ALREADY_EXISTS(f"The promotion code {body.code!r} exists")
    log.info("promotion_code.created", promotion_code_id=code.id, coupon_id=coupon.id)
    return await idem.respond(201, code_out(code, coupon, now))


@router.get("", response_model=list[PromotionCodeOut])
async def list_promotion_codes(
    session: SessionDep,
    _: CurrentKey,
    code: CodeText | None = None,
    coupon_id: CouponId | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> object:
    """Codes, oldest first; `code` finds one by its text in any case."""
    codes = await repo.list_codes(
        session, code_key=code.lower() if code else None, coupon_id=coupon_id, limit=limit
    )
    now = datetime.now(UTC)
    out = []
    for found in codes:
        coupon = await repo.get_coupon(session, found.coupon_id)
        assert coupon is not None  # coupons are never removed
        out.append(code_out(found, coupon, now))
    return out


@router.get("/{code_id}", response_model=PromotionCodeOut)
async def get_promotion_code(code_id: str, session: SessionDep, _: CurrentKey) -> object:
    return await _out(session, code_id)


@router.post("/{code_id}/deactivate", response_model=PromotionCodeOut)
async def deactivate_promotion_code(code_id: str, session: SessionDep, key: ProductKey) -> object:
    """The code can no longer be redeemed; discounts it gave continue."""
    if await repo.get_code(session, code_id) is None:
        raise code_not_found(code_id)
    await repo.deactivate_code(session, code_id)
    log.info("promotion_code.deactivated", promotion_code_id=code_id, actor=key.actor)
    return await _out(session, code_id)


async def _out(session: SessionDep, code_id: str) -> PromotionCodeOut:
    code = await repo.get_code(session, code_id, fresh=True)
    if code is None:
        raise code_not_found(code_id)
    coupon = await repo.get_coupon(session, code.coupon_id)
    assert coupon is not None  # coupons are never removed
    return code_out(code, coupon, datetime.now(UTC))
