"""Coupons and promotion codes as the API shows them, and redeeming one for a subscription.

A redemption is checked (404, 409, 422, in that order of what it names) and then counted in
the caller's unit of work (`db.repositories.coupons.reserve`). With a trial it commits with
the subscription's creation record. Before a workflow decides (a first charge, a discount
added later) it is committed `reserved` (`redeem_for` commits: the work is made durable
before calling out), then confirmed, or released if the workflow refused it: a refused
creation never keeps a redemption. One whose outcome is unknown is the redemption
sweeper's (`api.redemption_sweeper`).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import WorkflowUpdateFailedError

from api.coupon_schemas import CouponOut, PromotionCodeOut
from api.ids import new_id
from db.coupon_tables import Coupon, PromotionCode
from db.engine import unit_of_work
from db.models import Subscription
from db.repositories import coupons as repo
from db.repositories import items as items_repo
from db.repositories import plans, test_clocks
from domain import errors
from domain.coupons import (
    CodeState,
    CouponState,
    CouponTerms,
    Duration,
    check_applicable,
    check_code_active,
    check_code_eligible,
    check_coupon,
    code_active,
    coupon_valid,
    percent_to_hundredths,
)
from domain.discounts import DiscountGrant
from domain.errors import DomainError
from domain.items import recurring_total
from workflows.messages import SubscriptionInput

log = structlog.get_logger()


def coupon_state(coupon: Coupon) -> CouponState:
    return CouponState(
        coupon_id=coupon.id,
        redeem_by=coupon.redeem_by,
        deleted=coupon.deleted_at is not None,
        max_redemptions=coupon.max_redemptions,
        times_redeemed=coupon.times_redeemed,
    )


def code_state(code: PromotionCode) -> CodeState:
    return CodeState(
        code_id=code.id,
        code=code.code,
        active=code.active,
        expires_at=code.expires_at,
        max_redemptions=code.max_redemptions,
        times_redeemed=code.times_redeemed,
        customer_id=code.customer_id,
        first_time_transaction=code.first_time_transaction,
        minimum_amount=code.minimum_amount,
    )


def coupon_terms(coupon: Coupon) -> CouponTerms:
    """The terms a discount keeps from the coupon it was redeemed from."""
    return CouponTerms(
        coupon_id=coupon.id,
        name=coupon.name,
        percent_off_hundredths=(
            percent_to_hundredths(coupon.percent_off) if coupon.percent_off is not None else None
        ),
        amount_off=coupon.amount_off,
        currency=coupon.currency,
        duration=Duration(coupon.duration),
        duration_in_months=coupon.duration_in_months,
        applies_to_plans=coupon.applies_to_plans,
    )


def coupon_out(coupon: Coupon, now: datetime) -> CouponOut:
    return CouponOut(
        id=coupon.id,
        name=coupon.name,
        percent_off=coupon.percent_off,
        amount_off=coupon.amount_off,
        currency=coupon.currency,
        duration=coupon.duration,
        duration_in_months=coupon.duration_in_months,
        applies_to_plans=coupon.applies_to_plans,
        max_redemptions=coupon.max_redemptions,
        times_redeemed=coupon.times_redeemed,
        redeem_by=coupon.redeem_by,
        deleted=coupon.deleted_at is not None,
        valid=coupon_valid(coupon_state(coupon), now),
        created_at=coupon.created_at,
    )


def code_out(code: PromotionCode, coupon: Coupon, now: datetime) -> PromotionCodeOut:
    return PromotionCodeOut(
        id=code.id,
        code=code.code,
        coupon=coupon_out(coupon, now),
        active=code_active(code_state(code), now),
        max_redemptions=code.max_redemptions,
        times_redeemed=code.times_redeemed,
        expires_at=code.expires_at,
        customer_id=code.customer_id,
        first_time_transaction=code.first_time_transaction,
        minimum_amount=code.minimum_amount,
        created_at=code.created_at,
    )


def coupon_not_found(coupon_id: str) -> DomainError:
    return errors.COUPON_NOT_FOUND(f"No coupon with id {coupon_id!r}")


def code_not_found(what: str) -> DomainError:
    return errors.PROMOTION_CODE_NOT_FOUND(f"No promotion code {what!r}")


@dataclass(frozen=True)
class Redemption:
    """A counted redemption: its id (to confirm or release) and what the discount holds."""

    id: str
    coupon: CouponTerms
    promotion_code_id: str | None

    @property
    def grant(self) -> DiscountGrant:
        """The discount it gives, for the subscription to start at its own time."""
        return DiscountGrant(
            coupon=self.coupon, promotion_code_id=self.promotion_code_id, redemption_id=self.id
        )


@dataclass(frozen=True)
class Redeeming:
    """What a redemption is for: the customer, the subscription and its items' terms."""

    customer_id: str
    subscription_id: str
    currency: str
    plan_ids: list[str]
    recurring_total: int  # per period, before discounts (for `minimum_amount`)
    now: datetime  # the subscription's time (its test clock's, if it has one)


async def redeem(
    session: AsyncSession,
    target: Redeeming,
    *,
    coupon_id: str | None = None,
    promotion_code: str | None = None,
    status: str = "reserved",
    redemption_id: str | None = None,
) -> Redemption:
    """Check and count one redemption in `session`'s transaction (not committed). Raises
    the API's DomainError when the coupon or code may not be redeemed for `target`; the
    session is then rolled back. `redemption_id` names the redemption (a request sent
    again with its `Idempotency-Key` names the same one, counted once)."""
    code = None
    if promotion_code is not None:
        code = await repo.find_code(session, promotion_code.lower())
        if code is None:
            raise code_not_found(promotion_code)
        coupon_id = code.coupon_id
    assert coupon_id is not None, "a redemption names a coupon or a promotion code"
    coupon = await repo.get_coupon(session, coupon_id)
    if coupon is None:
        raise coupon_not_found(coupon_id)
    terms = await _check(session, coupon, code, target)
    redemption_id = redemption_id or new_id("redemption")
    refusal = await repo.reserve(
        session,
        redemption_id=redemption_id,
        coupon_id=coupon.id,
        promotion_code_id=code.id if code else None,
        customer_id=target.customer_id,
        subscription_id=target.subscription_id,
        now=target.now,
        status=status,
    )
    if refusal is not None:
        # Another redemption took the last one (or a deletion came) since the check: read
        # the rows again for the precise reason (the rollback expires the rows read).
        coupon_id, code_id = coupon.id, code.id if code else None
        await session.rollback()
        fresh = await repo.get_coupon(session, coupon_id)
        fresh_code = await repo.get_code(session, code_id) if code_id else None
        if fresh is not None:
            await _check(session, fresh, fresh_code, target)
        if refusal == repo.Refusal.COUPON:
            raise errors.COUPON_EXHAUSTED(f"Coupon {coupon_id} can no longer be redeemed")
        raise errors.PROMOTION_CODE_INACTIVE(f"Promotion code {code_id} can no longer be redeemed")
    log.info(
        "coupon.redeemed",
        coupon_id=terms.coupon_id,
        promotion_code_id=code.id if code else None,
        subscription_id=target.subscription_id,
        status=status,
    )
    return Redemption(id=redemption_id, coupon=terms, promotion_code_id=code.id if code else None)


async def redeem_for(
    session: AsyncSession,
    coupon_id: str | None,
    promotion_code: str | None,
    inp: SubscriptionInput,
    now: datetime,
    *,
    trial: bool,
) -> Redemption:
    """The redemption of a subscription being created from `inp` at `now`. With a trial it
    is kept at once and commits with the subscription's creation record, in the caller's
    unit of work. Without, it is reserved and committed here, before the workflow takes the
    first charge (`kept_if_applied` settles it)."""
    # Every item counts: the coupon applies if one of them is of its plans, and the
    # recurring total of all of them meets a code's `minimum_amount`.
    items = inp.items
    target = Redeeming(
        customer_id=inp.customer_id,
        subscription_id=inp.subscription_id,
        currency=inp.plan.currency,
        plan_ids=[i.plan.plan_id for i in items] if items else [inp.plan.plan_id],
        recurring_total=recurring_total(items) if items else inp.plan.amount,
        now=now,
    )
    redemption = await redeem(
        session,
        target,
        coupon_id=coupon_id,
        promotion_code=promotion_code,
        status="redeemed" if trial else "reserved",
    )
    if not trial:
        await session.commit()
    return redemption


async def redeem_on(
    session: AsyncSession,
    subscription: Subscription,
    *,
    coupon_id: str | None,
    promotion_code: str | None,
    idempotency: tuple[str, str | None],
) -> Redemption:
    """A redemption for a running subscription, at its time (its test clock's, if it has
    one), reserved and committed here before the workflow is asked to apply it. Under an
    `Idempotency-Key` (`idempotency`: the API key's id and the key) the redemption id is
    derived from the key, so the request sent again counts nothing twice."""
    plan_ids, currency, total = await _items_terms(session, subscription)
    now = datetime.now(UTC)
    if subscription.test_clock_id is not None:
        clock = await test_clocks.get(session, subscription.test_clock_id)
        now = clock.frozen_time if clock is not None else now
    target = Redeeming(
        customer_id=subscription.customer_id,
        subscription_id=subscription.id,
        currency=currency,
        plan_ids=plan_ids,
        recurring_total=total,
        now=now,
    )
    api_key_id, key = idempotency
    redemption_id = None
    if key is not None:
        seed = f"{api_key_id}\0{key}\0{subscription.id}".encode()
        redemption_id = f"redemption_{hashlib.sha256(seed).hexdigest()[:24]}"
    redemption = await redeem(
        session,
        target,
        coupon_id=coupon_id,
        promotion_code=promotion_code,
        redemption_id=redemption_id,
    )
    await session.commit()
    return redemption


async def _items_terms(
    session: AsyncSession, subscription: Subscription
) -> tuple[list[str], str, int]:
    """The plans of all the subscription's items (as the read model has them), their
    currency and their recurring total per period (amount x quantity, summed)."""
    rows = (await items_repo.items_of(session, [subscription.id])).get(subscription.id)
    if not rows:  # a read model written before items: its plan, at quantity 1
        plan = await plans.get(session, subscription.plan_id)
        assert plan is not None  # plans are never removed
        return [plan.id], plan.currency, plan.amount
    found = await items_repo.plans(session, [row.plan_id for row in rows])
    total = sum(found[row.plan_id].amount * row.quantity for row in rows)
    return [row.plan_id for row in rows], found[rows[0].plan_id].currency, total


async def _check(
    session: AsyncSession, coupon: Coupon, code: PromotionCode | None, target: Redeeming
) -> CouponTerms:
    if code is not None:
        check_code_active(code_state(code), target.now)
    check_coupon(coupon_state(coupon), target.now)
    if code is not None:
        state = code_state(code)
        paid_before = state.first_time_transaction and await repo.has_paid_before(
            session, target.customer_id
        )
        check_code_eligible(
            state,
            customer_id=target.customer_id,
            has_paid_before=paid_before,
            recurring_total=target.recurring_total,
        )
    terms = coupon_terms(coupon)
    check_applicable(terms, currency=target.currency, plan_ids=target.plan_ids)
    return terms


async def release(sessions: async_sessionmaker[AsyncSession], redemption_id: str) -> None:
    """Give back a reservation whose request failed, in a session of its own (the request's
    may be in a failed transaction)."""
    try:
        async with unit_of_work(sessions) as session:
            released = await repo.release(session, redemption_id)
    except Exception:
        # The reservation stays counted; `stale_reservations` lists it for a sweep.
        log.exception("coupon.release_failed", redemption_id=redemption_id)
        return
    if released:
        log.info("coupon.redemption_released", redemption_id=redemption_id)


@asynccontextmanager
async def kept_if_applied(
    sessions: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    redemption: Redemption | None,
) -> AsyncIterator[None]:
    """Around the workflow call that applies a reserved redemption: confirmed if it
    succeeds, released if the workflow refused it (or never got it); kept reserved when the
    outcome is unknown (the workflow did not answer in time, the request was cut off), for
    the redemption sweeper to settle from what the subscription recorded."""
    if redemption is None:
        yield
        return
    try:
        yield
    except WorkflowUpdateFailedError:
        await release(sessions, redemption.id)
        raise
    except DomainError as err:
        if err.code != errors.WORKFLOW_UNAVAILABLE.code:
            await release(sessions, redemption.id)
        raise
    await repo.confirm(session, redemption.id)  # committed with the caller's unit of work
