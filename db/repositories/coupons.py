"""Coupons, promotion codes and redemptions.

A redemption is counted by conditional updates (`... WHERE times_redeemed < max_redemptions
RETURNING`): concurrent redemptions of one coupon queue on its row, and each re-checks the
condition against the count the previous one committed, so `max_redemptions` is never
passed (a CHECK constraint backs it). The count goes up in the caller's transaction, so a
redemption that is rolled back never counted; one committed as `reserved` ahead of work
that may still fail is given back by `release`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, Table, and_, delete, exists, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from db.coupon_tables import Coupon, CouponRedemption, PromotionCode
from db.models import Invoice, Plan

_COUPONS = Coupon.__table__  # type: ignore[attr-defined]
_CODES = PromotionCode.__table__  # type: ignore[attr-defined]
_REDEMPTIONS = CouponRedemption.__table__  # type: ignore[attr-defined]


async def add_coupon(session: AsyncSession, coupon: Coupon) -> bool:
    """Insert the coupon; False when its id is taken."""
    values = coupon.model_dump()
    statement = insert(_COUPONS).values(**values).on_conflict_do_nothing().returning(_COUPONS.c.id)
    return (await session.execute(statement)).first() is not None


async def get_coupon(
    session: AsyncSession, coupon_id: str, *, fresh: bool = False
) -> Coupon | None:
    """The coupon; `fresh` reads it again after this unit of work changed it."""
    return await session.get(Coupon, coupon_id, populate_existing=fresh)


async def list_coupons(session: AsyncSession, *, limit: int) -> Sequence[Coupon]:
    query = select(Coupon).order_by(col(Coupon.created_at), col(Coupon.id)).limit(limit)
    return (await session.execute(query)).scalars().all()


async def missing_plans(session: AsyncSession, plan_ids: Sequence[str]) -> list[str]:
    """Those of `plan_ids` that name no plan, in their order."""
    query = select(col(Plan.id)).where(col(Plan.id).in_(plan_ids))
    found = set((await session.execute(query)).scalars())
    return [plan_id for plan_id in plan_ids if plan_id not in found]


async def delete_coupon(session: AsyncSession, coupon_id: str, now: datetime) -> None:
    """Stop new redemptions (the first deletion's time is kept)."""
    await session.execute(
        update(_COUPONS)
        .where(_COUPONS.c.id == coupon_id, _COUPONS.c.deleted_at.is_(None))
        .values(deleted_at=now)
    )


async def add_code(session: AsyncSession, code: PromotionCode) -> bool:
    """Insert the code; False when its id or its text (in any case) is taken."""
    statement = (
        insert(_CODES).values(**code.model_dump()).on_conflict_do_nothing().returning(_CODES.c.id)
    )
    return (await session.execute(statement)).first() is not None


async def get_code(
    session: AsyncSession, code_id: str, *, fresh: bool = False
) -> PromotionCode | None:
    """The code; `fresh` reads it again after this unit of work changed it."""
    return await session.get(PromotionCode, code_id, populate_existing=fresh)


async def find_code(session: AsyncSession, code_key: str) -> PromotionCode | None:
    """The code whose text is `code_key` in lower case."""
    query = select(PromotionCode).where(col(PromotionCode.code_key) == code_key)
    return (await session.execute(query)).scalars().first()


async def list_codes(
    session: AsyncSession, *, code_key: str | None, coupon_id: str | None, limit: int
) -> Sequence[PromotionCode]:
    query = select(PromotionCode).order_by(col(PromotionCode.created_at), col(PromotionCode.id))
    if code_key is not None:
        query = query.where(col(PromotionCode.code_key) == code_key)
    if coupon_id is not None:
        query = query.where(col(PromotionCode.coupon_id) == coupon_id)
    return (await session.execute(query.limit(limit))).scalars().all()


async def deactivate_code(session: AsyncSession, code_id: str) -> None:
    await session.execute(update(_CODES).where(_CODES.c.id == code_id).values(active=False))


async def has_paid_before(session: AsyncSession, customer_id: str) -> bool:
    """Whether the customer has paid an invoice with something to pay (not a first
    transaction any more)."""
    query = select(
        exists().where(
            col(Invoice.customer_id) == customer_id,
            col(Invoice.status) == "paid",
            col(Invoice.total) > 0,
        )
    )
    return bool((await session.execute(query)).scalar())


class Refusal(StrEnum):
    """Which limit stopped a reservation."""

    COUPON = "coupon"
    CODE = "code"


async def reserve(
    session: AsyncSession,
    *,
    redemption_id: str,
    coupon_id: str,
    promotion_code_id: str | None,
    customer_id: str,
    subscription_id: str,
    now: datetime,
    status: str,
) -> Refusal | None:
    """Count one redemption of the coupon (and code) and record it, unless the coupon is
    deleted, past `redeem_by` or exhausted, or the code deactivated, expired or exhausted
    (at `now`). On a refusal nothing is recorded but the coupon's count may have gone up in
    this transaction: the caller rolls back. A redemption id already recorded (the same
    request sent again) is not counted twice."""
    again = select(_REDEMPTIONS.c.id).where(_REDEMPTIONS.c.id == redemption_id)
    if (await session.execute(again)).first() is not None:
        return None
    coupon_open = and_(
        _COUPONS.c.deleted_at.is_(None),
        or_(_COUPONS.c.redeem_by.is_(None), _COUPONS.c.redeem_by > now),
    )
    if not await _count_one(session, _COUPONS, coupon_id, coupon_open):
        return Refusal.COUPON
    if promotion_code_id is not None:
        code_open = and_(
            _CODES.c.active.is_(True),
            or_(_CODES.c.expires_at.is_(None), _CODES.c.expires_at > now),
        )
        if not await _count_one(session, _CODES, promotion_code_id, code_open):
            return Refusal.CODE
    await session.execute(
        insert(_REDEMPTIONS).values(
            id=redemption_id,
            coupon_id=coupon_id,
            promotion_code_id=promotion_code_id,
            customer_id=customer_id,
            subscription_id=subscription_id,
            status=status,
            created_at=now,
        )
    )
    return None


async def _count_one(
    session: AsyncSession, table: Table, row_id: str, still_open: ColumnElement[bool]
) -> bool:
    """Add one to the row's `times_redeemed` if it is open and under `max_redemptions`
    (one statement: concurrent redemptions cannot pass the limit)."""
    counted = await session.execute(
        update(table)
        .where(
            table.c.id == row_id,
            still_open,
            or_(
                table.c.max_redemptions.is_(None),
                table.c.times_redeemed < table.c.max_redemptions,
            ),
        )
        .values(times_redeemed=table.c.times_redeemed + 1)
        .returning(table.c.id)
    )
    return counted.first() is not None


async def confirm(session: AsyncSession, redemption_id: str) -> None:
    """The reservation's request succeeded: the redemption is kept for good."""
    await session.execute(
        update(_REDEMPTIONS)
        .where(_REDEMPTIONS.c.id == redemption_id, _REDEMPTIONS.c.status == "reserved")
        .values(status="redeemed")
    )


async def release(session: AsyncSession, redemption_id: str) -> bool:
    """Give a reservation back (its request failed): delete it and uncount it from the
    coupon and code. False if it was no reservation (already released or confirmed)."""
    gone = (
        await session.execute(
            delete(_REDEMPTIONS)
            .where(_REDEMPTIONS.c.id == redemption_id, _REDEMPTIONS.c.status == "reserved")
            .returning(_REDEMPTIONS.c.coupon_id, _REDEMPTIONS.c.promotion_code_id)
        )
    ).first()
    if gone is None:
        return False
    coupon_id, code_id = gone
    await session.execute(
        update(_COUPONS)
        .where(_COUPONS.c.id == coupon_id)
        .values(times_redeemed=_COUPONS.c.times_redeemed - 1)
    )
    if code_id is not None:
        await session.execute(
            update(_CODES)
            .where(_CODES.c.id == code_id)
            .values(times_redeemed=_CODES.c.times_redeemed - 1)
        )
    return True


async def settle_stale(session: AsyncSession, *, older_than: datetime, limit: int) -> list[str]:
    """Settle reservations older than `older_than` that their request left behind (its
    process died, or the workflow did not answer in time): one whose subscription recorded
    it (a `subscription.discount_applied` event naming it) is confirmed, every other one
    released. Returns the ids released."""
    await session.execute(
        text(
            "UPDATE coupon_redemptions r SET status = 'redeemed' "
            "WHERE r.status = 'reserved' AND r.created_at < :older_than AND EXISTS ("
            "SELECT FROM events e WHERE e.subscription_id = r.subscription_id "
            "AND e.type = 'subscription.discount_applied' "
            "AND e.data ->> 'redemption_id' = r.id)"
        ),
        {"older_than": older_than},
    )
    released = []
    for redemption_id, _ in await stale_reservations(session, older_than=older_than, limit=limit):
        if await release(session, redemption_id):
            released.append(redemption_id)
    return released


async def stale_reservations(
    session: AsyncSession, *, older_than: datetime, limit: int
) -> Sequence[tuple[str, str]]:
    """(redemption id, subscription id) of reservations left by a request that never
    finished (its process died), oldest first."""
    query = (
        select(_REDEMPTIONS.c.id, _REDEMPTIONS.c.subscription_id)
        .where(and_(_REDEMPTIONS.c.status == "reserved", _REDEMPTIONS.c.created_at < older_than))
        .order_by(_REDEMPTIONS.c.created_at)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]
