"""The usage lines of an invoice: how much a period's usage costs, per metered item.

The workflow decides when (at the period's end, again once the grace for late events is
over, at a cancel or a plan change); this activity computes how much. It reads the running
aggregate that ingestion keeps (no raw events) and claims it for the invoice, so it is
safe to repeat: a retry after a crash, or the finalizing call after the draft one, prices
the same aggregate again instead of adding to anything, and once `close` has frozen the
aggregate every call answers the same line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db.repositories import usage
from domain.usage import number_text, packages
from domain.usage_contracts import (
    MeteredItem,
    UsageLineDraft,
    UsageLinesRequest,
    UsagePreviewRequest,
)

log = structlog.get_logger()


class UsageActivities:
    def __init__(self, engine: AsyncEngine) -> None:
        # Each claim is one statement: atomic on its own.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @activity.defn(name="usage_lines")
    async def usage_lines(self, req: UsageLinesRequest) -> list[UsageLineDraft]:
        return await self.lines(req, datetime.now(UTC))

    async def lines(self, req: UsageLinesRequest, now: datetime) -> list[UsageLineDraft]:
        drafts = []
        async with self._autocommit.connect() as conn:
            for item in req.items:
                row = await usage.claim_period(
                    conn,
                    subscription_id=req.subscription_id,
                    customer_id=req.customer_id,
                    meter_id=item.meter_id,
                    period_start=req.period_start,
                    period_end=req.period_end,
                    invoice_id=req.invoice_id,
                    close_at=now if req.close else None,
                    now=now,
                )
                if row is None:
                    raise ApplicationError(
                        f"the usage of {req.subscription_id} for meter {item.meter_id} from "
                        f"{req.period_start.isoformat()} is billed by another invoice, or the "
                        "meter does not exist",
                        type="usage_period_taken",
                        non_retryable=True,
                    )
                drafts.append(_line(item, row, req.period_start))
        log.info(
            "usage.lines_computed",
            subscription_id=req.subscription_id,
            invoice_id=req.invoice_id,
            lines=len(drafts),
            closed=req.close,
        )
        return drafts

    @activity.defn(name="usage_so_far")
    async def usage_so_far(self, req: UsagePreviewRequest) -> list[UsageLineDraft]:
        """The lines a usage billing would make now, read without claiming anything (a
        preview): safe to repeat, it writes nothing."""
        keys = [(item.meter_id, part.start) for part in req.stretches for item in part.items]
        async with self._autocommit.connect() as conn:
            found = await usage.aggregates_so_far(conn, req.subscription_id, keys)
        drafts = []
        for part in req.stretches:
            for item in part.items:
                row = found.get((item.meter_id, part.start))
                if row is None:
                    raise ApplicationError(
                        f"meter {item.meter_id} does not exist",
                        type="unknown_meter",
                        non_retryable=True,
                    )
                drafts.append(_line(item, row, part.start, part.end))
        return drafts


def _line(
    item: MeteredItem, row: dict[str, object], start: datetime, end: datetime | None = None
) -> UsageLineDraft:
    """The line of `item` for the aggregate `row`, over [start, end) (by default the
    aggregate's own end)."""
    quantity = row["quantity"]
    assert isinstance(quantity, Decimal)
    count = packages(quantity, item.package_size)
    size = f", {count} package(s) of {item.package_size}" if item.package_size > 1 else ""
    until = end if end is not None else row["period_end"]
    assert isinstance(until, datetime)
    return UsageLineDraft(
        plan_id=item.plan_id,
        meter_id=item.meter_id,
        item_id=item.item_id,
        quantity=number_text(quantity),
        packages=count,
        amount=count * item.amount,
        description=f"{row['meter_name']}: {number_text(quantity)}{size}",
        period_start=start,
        period_end=until,
        closed=row["closed_at"] is not None,
    )
