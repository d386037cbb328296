"""Starting a subscription that begins with a trial."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api import lifecycle
from api.start_sweeper import StartSweeper
from config import Settings
from db.repositories import starts as start_records
from workflows.messages import SubscriptionInput


async def launch_trial(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    starts: StartSweeper,
    start_input: SubscriptionInput,
) -> None:
    """Start the workflow of a trial recorded in the caller's unit of work
    (`lifecycle.record_trial`). Commits it first: the first state and the start record are
    durable before the workflow runs, so the start sweeper starts it should this request die
    or Temporal refuse it. Why Temporal refused is noted on the record, for the caller's unit
    of work to commit."""
    await session.commit()
    if (error := await lifecycle.launch(temporal, settings, start_input)) is None:
        starts.forget(start_input.subscription_id)
    else:
        await start_records.failed(session, start_input.subscription_id, error)
