"""A new run records one patch marker (the bundle), asked as it begins, and no
`TemporalChangeVersion` upsert after that: each patch asked for on its own cost a marker
and an upsert, and the one first asked at a test clock advance cost the first renewal a
second upsert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from tests.api.billing_support import start_active
from tests.helpers import advance, make_clock, make_customer, make_plan, marker_details, subscribe
from workflows.messages import workflow_id_for
from workflows.patches import BUNDLE

START = datetime(2029, 3, 4, 9, 0, tzinfo=UTC)
CHANGE_VERSION = "TemporalChangeVersion"


def _patch_ids(events: list[HistoryEvent]) -> list[str]:
    return [d["id"] for d in marker_details(events, "core_patch", "patch-data")]


def _change_version_upserts(events: list[HistoryEvent]) -> int:
    return sum(
        1
        for e in events
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
        and CHANGE_VERSION
        in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    )


async def _events(client: Client, subscription_id: str) -> list[HistoryEvent]:
    history = await client.get_workflow_handle(workflow_id_for(subscription_id)).fetch_history()
    return list(history.events)


async def test_a_new_run_asks_for_its_patches_once_as_it_begins(
    app_client: httpx.AsyncClient, temporal_client: Client
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1200)
    _, clock, sub = await start_active(api, plan, START)
    created = await _events(temporal_client, sub["id"])
    assert _patch_ids(created) == [BUNDLE]
    assert _change_version_upserts(created) == 1
    first_task = next(
        e.event_id for e in created if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    )
    markers = [e for e in created if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    bundle = markers[0].marker_recorded_event_attributes
    assert bundle.workflow_task_completed_event_id == first_task, "asked in the first task"

    await advance(api, clock["id"], START + timedelta(days=31))  # the first renewal
    renewed = await _events(temporal_client, sub["id"])
    added = renewed[len(created) :]
    assert _patch_ids(added) == []
    assert _change_version_upserts(added) == 0
    # The advance is accepted in a task of its own, before the renewal charges (a timer
    # ends that task): a worker that dies during the charge cannot lose the update.
    # Then the charge's marker, the NextBillingAt upsert, the update's completion.
    assert [EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in added] == [
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "WORKFLOW_EXECUTION_UPDATE_ACCEPTED",
        "TIMER_STARTED",
        "TIMER_FIRED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_TASK_STARTED",
        "WORKFLOW_TASK_COMPLETED",
        "MARKER_RECORDED",
        "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES",
        "WORKFLOW_EXECUTION_UPDATE_COMPLETED",
    ]


async def test_a_trial_run_records_no_patch_when_it_ends_or_renews(
    app_client: httpx.AsyncClient, temporal_client: Client
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1200, trial_days=7)
    customer = await make_customer(api)
    clock = await make_clock(api, START)
    sub: dict[str, Any] = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    assert sub["status"] == "trialing"
    await advance(api, clock["id"], START + timedelta(days=7))  # the first payment
    await advance(api, clock["id"], START + timedelta(days=7 + 31))  # a renewal
    events = await _events(temporal_client, sub["id"])
    assert _patch_ids(events) == [BUNDLE]
    assert _change_version_upserts(events) == 1
