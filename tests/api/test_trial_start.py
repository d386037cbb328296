"""Creating a subscription with a trial: the API decides the first state and answers without
waiting for the workflow; the workflow starts from that state; a start that could not be
made at once is made by the start sweeper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from temporalio.client import Client

from api import lifecycle
from api.start_sweeper import StartSweeper
from db.engine import get_engine, session_factory
from db.models import Plan, SubscriptionStart
from tests.conftest import Stack
from tests.helpers import (
    advance,
    entitled,
    event_types,
    eventually,
    get_sub,
    invoices,
    make_clock,
    make_customer,
    make_plan,
    marker_details,
    subscribe,
    ts,
)
from workflows.converter import data_converter
from workflows.messages import SubscriptionInput, workflow_id_for
from workflows.projection import initial_state
from workflows.subscription import SubscriptionWorkflow

START = datetime(2027, 4, 2, 9, 30, tzinfo=UTC)


async def test_a_trial_is_readable_and_entitled_as_soon_as_it_is_created(
    app_client: httpx.AsyncClient, temporal_client: Client, stack: Stack
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1200, trial_days=5, features=["posts", "archive"])
    customer = await make_customer(api)
    clock = await make_clock(api, START)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    # Nothing waited for the worker, yet all of it is there at once.
    assert sub["status"] == "trialing" and ts(sub["trial_end"]) == START + timedelta(days=5)
    assert await get_sub(api, sub["id"]) == sub
    assert await event_types(api, sub["id"]) == [
        "subscription.created",
        "subscription.trial_started",
        "entitlement.granted",
        "entitlement.granted",
    ]
    assert await entitled(api, customer["id"], "archive")

    # The workflow holds the very state the API answered with, and did not project it again.
    handle = temporal_client.get_workflow_handle(workflow_id_for(sub["id"]))
    state = await handle.query(SubscriptionWorkflow.state)
    assert state.status == "trialing" and state.state_version == 1
    assert state.trial_end == START + timedelta(days=5)
    history = await handle.fetch_history()
    local_activities = marker_details(history.events, "core_local_activity", "data")
    assert local_activities == [], "no projection activity ran for the creation"
    description = await handle.describe()
    assert description.search_attributes["SubscriptionStatus"] == ["trialing"]
    sessions = session_factory(get_engine(stack.settings.effective_database_url))

    async def start_record_gone() -> bool:
        async with sessions() as session:
            return await session.get(SubscriptionStart, sub["id"]) is None

    # The start record is deleted with the next batch.
    await eventually(start_record_gone, what="the start record of a started workflow deleted")

    # And it runs the rest of the lifecycle from there.
    await advance(api, clock["id"], START + timedelta(days=5))
    sub = await get_sub(api, sub["id"])
    assert sub["status"] == "active"
    assert [(i["status"], i["total"]) for i in await invoices(api, sub["id"])] == [("paid", 1200)]
    types = await event_types(api, sub["id"])
    assert types.count("subscription.created") == 1 and types.count("entitlement.granted") == 2


async def test_a_start_left_behind_is_made_by_the_sweeper(
    app_client: httpx.AsyncClient, temporal_client: Client, stack: Stack
) -> None:
    """The API stopped between committing a trial and starting its workflow."""
    api, settings = app_client, stack.settings
    plan = await make_plan(api, amount=700, trial_days=10, features=["posts"])
    customer = await make_customer(api)
    sessions = session_factory(get_engine(settings.effective_database_url))
    async with sessions() as session:
        inp = SubscriptionInput(
            subscription_id=f"sub_left_{customer['id'][-12:]}",
            customer_id=customer["id"],
            plan=lifecycle.plan_snapshot(await session.get(Plan, plan["id"])),
            policy=lifecycle.billing_policy(settings),
        )
    async with sessions() as session:
        view, _ = await lifecycle.record_trial(session, inp, initial_state(inp, datetime.now(UTC)))
        await session.commit()  # ... and the process died here
    assert (await get_sub(api, inp.subscription_id))["status"] == "trialing"
    async with sessions() as session:
        assert await session.get(SubscriptionStart, inp.subscription_id) is not None

    # A start Temporal refuses (here: a namespace it does not have) keeps its record.
    elsewhere = await Client.connect(
        settings.temporal_address,
        namespace="no-such-namespace",
        data_converter=data_converter,
    )
    start_input = inp.model_copy(update={"carried": initial_state(inp, view.created_at)})
    assert await lifecycle.launch(elsewhere, settings, start_input), "an error is returned"
    refused = StartSweeper(sessions, elsewhere, settings, interval=3600, grace=timedelta(0))
    assert await refused.sweep() == 0
    async with sessions() as session:
        record = await session.get(SubscriptionStart, inp.subscription_id)
        assert record is not None and record.attempts >= 1 and record.last_error

    sweeper = StartSweeper(sessions, temporal_client, settings, interval=3600, grace=timedelta(0))
    assert await sweeper.sweep() >= 1
    handle = temporal_client.get_workflow_handle(workflow_id_for(inp.subscription_id))
    state = await handle.query(SubscriptionWorkflow.state)
    assert state.status == "trialing" and state.state_version == 1
    async with sessions() as session:
        assert await session.get(SubscriptionStart, inp.subscription_id) is None
    assert await sweeper.sweep() == 0, "nothing is started twice"
