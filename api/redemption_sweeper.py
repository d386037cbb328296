"""Settles coupon redemptions a request left `reserved`.

A redemption made ahead of a workflow's answer (a subscription without a trial, or a
discount added later) is reserved, then confirmed when the answer is a success and
released when it is a refusal. If the API process dies in between, or the workflow does
not answer before the request's deadline (it may still apply the discount), the
reservation stays; every API process runs this loop, which confirms such a reservation once
it is older than `grace` if the subscription recorded the discount (its
`subscription.discount_applied` event names the redemption) and releases it otherwise, so
a creation that never happened does not keep a coupon's redemption.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from api.periodic import Periodic
from db.engine import unit_of_work
from db.repositories import coupons

log = structlog.get_logger()


class RedemptionSweeper(Periodic):
    name = "redemption_sweeper"

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        interval: float,
        grace: timedelta,
        batch: int = 100,
    ) -> None:
        super().__init__(interval)
        self._sessions = sessions
        self._grace = grace
        self._batch = batch

    async def sweep(self) -> int:
        """Settle what is overdue now; returns how many reservations were released."""
        older_than = datetime.now(UTC) - self._grace
        async with unit_of_work(self._sessions) as session:
            released = await coupons.settle_stale(session, older_than=older_than, limit=self._batch)
        for redemption_id in released:
            log.info("coupon.stale_reservation_released", redemption_id=redemption_id)
        return len(released)
