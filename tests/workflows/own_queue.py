"""A subscription workflow on a task queue of its own, with a charge activity the test
supplies beside the real projection activity, on the real Temporal server and database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.ledger import LedgerActivities
from api import lifecycle
from config import Settings
from db.engine import get_engine
from domain.contracts import PlanSnapshot
from domain.periods import Interval
from tests.conftest import Stack
from workflows.messages import SubscriptionInput
from workflows.subscription import SubscriptionWorkflow


@dataclass
class OwnQueue:
    settings: Settings  # the stack's, with this queue
    inp: SubscriptionInput  # a monthly subscription on a test clock at `start`


def own_queue(stack: Stack, name: str, start: datetime, amount: int = 800) -> OwnQueue:
    tag = uuid.uuid4().hex[:10]
    settings = stack.settings.model_copy(update={"task_queue": f"{name}-{tag[:6]}"})
    inp = SubscriptionInput(
        subscription_id=f"sub_{name.replace('-', '')[:8]}{tag}",
        customer_id=f"cus_{name.replace('-', '_')}",
        plan=PlanSnapshot(
            plan_id=f"plan_{name}",
            name=name,
            amount=amount,
            currency="usd",
            interval=Interval.MONTH,
        ),
        test_clock_id=f"clock_{name.replace('-', '_')}",
        clock_now=start,
        policy=lifecycle.billing_policy(settings),
    )
    return OwnQueue(settings, inp)


@asynccontextmanager
async def worker_for(
    client: Client, queue: OwnQueue, charge: Callable[..., Any]
) -> AsyncIterator[None]:
    """A worker on the queue: the workflow, `charge` as `charge_invoice`, the real ledger."""
    ledger = LedgerActivities(get_engine(queue.settings.effective_database_url))
    async with Worker(
        client,
        task_queue=queue.settings.task_queue,
        workflows=[SubscriptionWorkflow],
        activities=[charge, ledger.sync_subscription],
    ):
        yield
