"""Redemption counting in PostgreSQL: the caps hold under concurrent reservations, a
rolled-back or released reservation gives its count back, and the database refuses a count
past a cap by itself."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.coupon_tables import Coupon, PromotionCode
from db.engine import session_factory
from db.repositories import coupons as repo

NOW = datetime(2025, 1, 1, tzinfo=UTC)


async def _setup(
    engine: AsyncEngine, *, coupon_max: int | None, code_max: int | None
) -> tuple[str, str]:
    coupon_id, code_id = f"coupon_{uuid.uuid4().hex[:8]}", f"promo_{uuid.uuid4().hex[:8]}"
    async with session_factory(engine)() as session:
        await repo.add_coupon(
            session,
            Coupon(
                id=coupon_id,
                name="cap",
                percent_off=None,
                amount_off=100,
                currency="usd",
                duration="once",
                max_redemptions=coupon_max,
                created_at=NOW,
            ),
        )
        await repo.add_code(
            session,
            PromotionCode(
                id=code_id,
                code=code_id,
                code_key=code_id.lower(),
                coupon_id=coupon_id,
                max_redemptions=code_max,
                created_at=NOW,
            ),
        )
        await session.commit()
    return coupon_id, code_id


async def _try(engine: AsyncEngine, coupon_id: str, code_id: str | None) -> bool:
    async with session_factory(engine)() as session:
        refusal = await repo.reserve(
            session,
            redemption_id=f"redemption_{uuid.uuid4().hex}",
            coupon_id=coupon_id,
            promotion_code_id=code_id,
            customer_id="cus_x",
            subscription_id=f"sub_{uuid.uuid4().hex[:8]}",
            now=NOW,
            status="reserved",
        )
        if refusal is not None:
            await session.rollback()
            return False
        await asyncio.sleep(0.01)  # hold the row lock a little: the others queue on it
        await session.commit()
        return True


async def _counts(engine: AsyncEngine, coupon_id: str, code_id: str) -> tuple[int, int, int]:
    async with engine.connect() as conn:
        coupon = (
            await conn.execute(
                text("SELECT times_redeemed FROM coupons WHERE id = :id"), {"id": coupon_id}
            )
        ).scalar_one()
        code = (
            await conn.execute(
                text("SELECT times_redeemed FROM promotion_codes WHERE id = :id"), {"id": code_id}
            )
        ).scalar_one()
        rows = (
            await conn.execute(
                text("SELECT count(*) FROM coupon_redemptions WHERE coupon_id = :id"),
                {"id": coupon_id},
            )
        ).scalar_one()
    return coupon, code, rows


@pytest.mark.parametrize(("coupon_max", "code_max"), [(5, None), (None, 3), (4, 7)])
async def test_concurrent_reservations_never_pass_a_cap(
    scratch: AsyncEngine, coupon_max: int | None, code_max: int | None
) -> None:
    coupon_id, code_id = await _setup(scratch, coupon_max=coupon_max, code_max=code_max)
    outcomes = await asyncio.gather(*(_try(scratch, coupon_id, code_id) for _ in range(20)))
    cap = min(c for c in (coupon_max, code_max) if c is not None)
    assert sum(outcomes) == cap
    assert await _counts(scratch, coupon_id, code_id) == (cap, cap, cap)


async def test_a_refused_code_leaves_the_coupon_count_alone(scratch: AsyncEngine) -> None:
    coupon_id, code_id = await _setup(scratch, coupon_max=10, code_max=1)
    assert await _try(scratch, coupon_id, code_id)
    assert not await _try(scratch, coupon_id, code_id)  # the code is used up: rolled back
    assert await _counts(scratch, coupon_id, code_id) == (1, 1, 1)
    assert await _try(scratch, coupon_id, None)  # the coupon itself still has room
    assert await _counts(scratch, coupon_id, code_id) == (2, 1, 2)


async def test_release_gives_the_count_back_once_and_confirm_keeps_it(
    scratch: AsyncEngine,
) -> None:
    coupon_id, code_id = await _setup(scratch, coupon_max=1, code_max=1)
    sessions = session_factory(scratch)
    async with sessions() as session:
        assert (
            await repo.reserve(
                session,
                redemption_id="redemption_a",
                coupon_id=coupon_id,
                promotion_code_id=code_id,
                customer_id="cus_x",
                subscription_id="sub_a",
                now=NOW,
                status="reserved",
            )
            is None
        )
        await session.commit()
        stale = await repo.stale_reservations(
            session, older_than=NOW + timedelta(minutes=1), limit=10
        )
        assert ("redemption_a", "sub_a") in stale
        assert await repo.release(session, "redemption_a")
        assert not await repo.release(session, "redemption_a")  # a second release is a no-op
        await session.commit()
    assert await _counts(scratch, coupon_id, code_id) == (0, 0, 0)
    assert await _try(scratch, coupon_id, code_id)  # the freed place is taken again
    async with sessions() as session:
        (kept,) = (
            await session.execute(
                text("SELECT id FROM coupon_redemptions WHERE coupon_id = :id"), {"id": coupon_id}
            )
        ).one()
        await repo.confirm(session, kept)
        await session.commit()
        assert not await repo.release(session, kept)  # a confirmed redemption stays
        await session.commit()
    assert await _counts(scratch, coupon_id, code_id) == (1, 1, 1)


async def test_deleted_expired_and_deactivated_refuse(scratch: AsyncEngine) -> None:
    coupon_id, code_id = await _setup(scratch, coupon_max=None, code_max=None)
    async with session_factory(scratch)() as session:
        await repo.deactivate_code(session, code_id)
        await session.commit()
    assert not await _try(scratch, coupon_id, code_id)
    assert await _try(scratch, coupon_id, None)
    async with session_factory(scratch)() as session:
        await repo.delete_coupon(session, coupon_id, NOW)
        await session.commit()
    assert not await _try(scratch, coupon_id, None)
    assert await _counts(scratch, coupon_id, code_id) == (1, 0, 1)


async def test_the_database_refuses_a_count_past_the_cap(scratch: AsyncEngine) -> None:
    coupon_id, _ = await _setup(scratch, coupon_max=1, code_max=None)
    async with scratch.connect() as conn:
        with pytest.raises(IntegrityError):
            await conn.execute(
                text("UPDATE coupons SET times_redeemed = 2 WHERE id = :id"), {"id": coupon_id}
            )


async def _reserve(engine: AsyncEngine, coupon_id: str, redemption_id: str, sub_id: str) -> None:
    async with session_factory(engine)() as session:
        refusal = await repo.reserve(
            session,
            redemption_id=redemption_id,
            coupon_id=coupon_id,
            promotion_code_id=None,
            customer_id="cus_x",
            subscription_id=sub_id,
            now=NOW,
            status="reserved",
        )
        assert refusal is None
        await session.commit()


async def test_stale_reservations_are_confirmed_if_applied_else_released(
    scratch: AsyncEngine,
) -> None:
    coupon_id, code_id = await _setup(scratch, coupon_max=5, code_max=None)
    await _reserve(scratch, coupon_id, "redemption_kept", "sub_kept")
    await _reserve(scratch, coupon_id, "redemption_lost", "sub_lost")
    await _reserve(scratch, coupon_id, "redemption_young", "sub_young")
    async with scratch.begin() as conn:
        await conn.execute(
            text("UPDATE coupon_redemptions SET created_at = :t WHERE id <> 'redemption_young'"),
            {"t": NOW - timedelta(hours=1)},
        )
        await conn.execute(
            text(
                "INSERT INTO events (id, subscription_id, customer_id, type, data, occurred_at, "
                "created_at) VALUES ('evt_1', 'sub_kept', 'cus_x', "
                "'subscription.discount_applied', CAST(:data AS json), :t, :t)"
            ),
            {"data": '{"redemption_id": "redemption_kept"}', "t": NOW},
        )
    async with session_factory(scratch)() as session:
        released = await repo.settle_stale(session, older_than=NOW - timedelta(minutes=5), limit=10)
        await session.commit()
    assert released == ["redemption_lost"]
    async with scratch.connect() as conn:
        rows = dict((await conn.execute(text("SELECT id, status FROM coupon_redemptions"))).all())
    assert rows == {"redemption_kept": "redeemed", "redemption_young": "reserved"}
    assert (await _counts(scratch, coupon_id, code_id))[0] == 2


async def test_the_same_redemption_id_counts_once(scratch: AsyncEngine) -> None:
    coupon_id, code_id = await _setup(scratch, coupon_max=5, code_max=5)
    for _ in range(2):
        async with session_factory(scratch)() as session:
            refusal = await repo.reserve(
                session,
                redemption_id="redemption_same",
                coupon_id=coupon_id,
                promotion_code_id=code_id,
                customer_id="cus_x",
                subscription_id="sub_same",
                now=NOW,
                status="reserved",
            )
            assert refusal is None
            await session.commit()
    assert await _counts(scratch, coupon_id, code_id) == (1, 1, 1)
