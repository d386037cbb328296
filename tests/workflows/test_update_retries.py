"""The API sends an update again, under the same id, until its workflow answers.

Here no worker serves the subscription's task queue for the first seconds (as after a
`kill -9` of the only worker): each try times out, the next carries the same update id,
and once a worker is back the update runs exactly once. With no worker at all the request
ends with a 503 at its deadline instead of hanging or failing with a raw RPC error.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError

from api import lifecycle
from domain.errors import DomainError
from tests.conftest import Stack
from tests.helpers import eventually, make_customer, make_plan, ok, subscribe
from tests.workflows.own_queue import own_queue, worker_for
from tests.workflows.test_hard_decline import DecliningCard
from workflows.messages import AdvanceClock, workflow_id_for
from workflows.subscription import SubscriptionWorkflow

START = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


class RetryLog:
    """Stands in for `api.lifecycle`'s logger: the update id of every retried try."""

    def __init__(self) -> None:
        self.update_ids: list[str] = []

    def warning(self, event: str, **fields: Any) -> None:
        if event == "workflow.update_retried":
            self.update_ids.append(fields["update_id"])

    def __getattr__(self, level: str) -> Any:
        return lambda *args, **fields: None


async def test_an_update_is_sent_again_until_a_worker_answers(
    temporal_client: Client, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifecycle, "TRY_SECONDS", 1.0)
    retried = RetryLog()
    monkeypatch.setattr(lifecycle, "log", retried)
    queue = own_queue(stack, "update-retries", START, 700)
    inp = queue.inp
    handle = await temporal_client.start_workflow(
        SubscriptionWorkflow.run,
        inp,
        id=workflow_id_for(inp.subscription_id),
        task_queue=queue.settings.task_queue,
    )
    loop = asyncio.get_running_loop()
    sending = asyncio.create_task(
        lifecycle.send_update(
            temporal_client,
            inp.subscription_id,
            SubscriptionWorkflow.advance_clock,
            AdvanceClock(to=START + timedelta(days=1)),
            deadline=loop.time() + 60,
        )
    )
    # Several tries time out meanwhile, each logged as retried, and none is answered.
    await eventually(lambda: len(retried.update_ids) >= 2, what="two tries timed out")
    assert not sending.done()
    assert len(set(retried.update_ids)) == 1, "every try is the same update"
    async with worker_for(temporal_client, queue, DecliningCard().charge_invoice):
        result = await asyncio.wait_for(sending, 30)
        assert result.caught_up
        history = await handle.fetch_history()
        accepted = [
            e
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        ]
        assert len(accepted) == 1, "the tries were one update"
        await handle.terminate("test over")


async def test_no_worker_at_all_is_a_503_at_the_deadline(
    temporal_client: Client, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifecycle, "TRY_SECONDS", 1.0)
    inp = own_queue(stack, "no-worker", START, 700).inp
    handle = await temporal_client.start_workflow(
        SubscriptionWorkflow.run,
        inp,
        id=workflow_id_for(inp.subscription_id),
        task_queue=f"nobody-{uuid.uuid4().hex[:6]}",
    )
    settings = stack.settings.model_copy(update={"update_deadline_seconds": 3.0})
    with pytest.raises(DomainError) as raised:
        await lifecycle.update(
            temporal_client,
            settings,
            inp.subscription_id,
            SubscriptionWorkflow.advance_clock,
            AdvanceClock(to=START + timedelta(days=1)),
        )
    assert (raised.value.http_status, raised.value.code) == (503, "workflow_unavailable")
    await handle.terminate("test over")


async def test_a_create_whose_answer_is_lost_still_answers_with_the_subscription(
    app_client: httpx.AsyncClient, temporal_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start is made, then the connection drops before the answer: the API asks the
    running workflow for its first decision instead of failing a create that happened (a
    client would then create a second subscription)."""
    real = temporal_client.execute_update_with_start_workflow

    async def answer_lost(*args: Any, **kwargs: Any) -> Any:
        await real(*args, **kwargs)
        raise WorkflowUpdateRPCTimeoutOrCancelledError()

    monkeypatch.setattr(temporal_client, "execute_update_with_start_workflow", answer_lost)
    plan = await make_plan(app_client, amount=1100)
    customer = await make_customer(app_client)
    sub = await subscribe(app_client, customer_id=customer["id"], plan_id=plan["id"])
    assert sub["status"] == "active"
    listed = ok(await app_client.get("/v1/subscriptions", params={"customer_id": customer["id"]}))
    assert [s["id"] for s in listed] == [sub["id"]]
