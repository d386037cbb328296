"""Test clock advances: each subscription on a clock is sent the clock's new time and
caught up, independently of the others, and the clock is ready again once none is behind."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError

from api.lifecycle import run_ended, send_update
from config import Settings
from db.repositories import subscriptions, test_clocks
from domain import errors
from domain.errors import DomainError
from workflows.messages import AdvanceClock, AdvanceResult
from workflows.subscription import SubscriptionWorkflow

log = structlog.get_logger()


async def advance_subscription(
    client: Client, subscription_id: str, to: datetime, deadline: float | None = None
) -> AdvanceResult | None:
    """Advance one subscription's clock and wait until it has caught up (None: it has ended).

    A run that continues as new mid-advance answers `caught_up=False`; the next run
    (same workflow id) gets the same request until it has done everything due. Sending
    the same advance again is harmless: a workflow already at `to` answers at once.
    `deadline` is event-loop time (default: two minutes from now).
    """
    if deadline is None:
        deadline = asyncio.get_running_loop().time() + 120.0
    while True:
        try:
            result: AdvanceResult = await send_update(
                client,
                subscription_id,
                SubscriptionWorkflow.advance_clock,
                AdvanceClock(to=to),
                deadline=deadline,
            )
        except RPCError as err:
            if run_ended(err):
                return None
            raise
        if result.caught_up:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise errors.ADVANCE_INCOMPLETE(f"{subscription_id} did not catch up")
        await asyncio.sleep(0.01)


@dataclass(frozen=True)
class AdvanceFailure:
    subscription_id: str
    code: str
    message: str


async def advance_all(
    client: Client,
    subscription_ids: Sequence[str],
    to: datetime,
    deadline_seconds: float,
    concurrency: int = 64,
) -> list[AdvanceFailure]:
    """Advance every subscription; those that did not catch up by the deadline, and why
    (each is tried independently: one failure neither stops nor hides the others)."""
    gate = asyncio.Semaphore(concurrency)
    deadline = asyncio.get_running_loop().time() + deadline_seconds

    async def one(subscription_id: str) -> AdvanceFailure | None:
        async with gate:
            try:
                await advance_subscription(client, subscription_id, to, deadline)
            except WorkflowUpdateFailedError as err:
                return AdvanceFailure(subscription_id, "advance_rejected", str(err.cause))
            except DomainError as err:
                return AdvanceFailure(subscription_id, err.code, err.message)
            except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
                return AdvanceFailure(
                    subscription_id, "workflow_unavailable", str(err) or type(err).__name__
                )
            return None

    outcomes = await asyncio.gather(*(one(s) for s in subscription_ids))
    failures = [f for f in outcomes if f is not None]
    if failures:
        log.warning(
            "test_clock.advance_incomplete",
            behind=len(failures),
            of=len(subscription_ids),
            first=failures[0].subscription_id,
            code=failures[0].code,
        )
    return failures


async def drive_advance(
    session: AsyncSession, temporal: Client, settings: Settings, clock_id: str, to: datetime
) -> list[AdvanceFailure]:
    """Send the advance to every live subscription on the clock; the clock is ready again
    once none is behind. Commits the session's work before the workflows are sent the
    advance (no transaction stays open while they catch up), and the clock's readiness."""
    ids = list(await subscriptions.ids_on_clock(session, clock_id))
    await session.commit()  # do not hold a transaction open while workflows catch up
    failures = await advance_all(temporal, ids, to, settings.clock_advance_deadline_seconds)
    if not failures:
        await test_clocks.finish_advance(session, clock_id, to)
        await session.commit()
    return failures
