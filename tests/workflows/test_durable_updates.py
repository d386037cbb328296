"""An update that moves money is in history before the money moves.

The charge runs as a local activity, inside a workflow task; an update delivered in that
task reaches history only when the task completes. If the charge ran in the update's own
task, a worker that died after Stripe's answer and before the task completed lost the
update: the customer was charged, and nothing applied or resent the change. So the task
that accepts an upgrade, a `retry_payment` or a test clock advance completes before the
charge's task begins (tests/workflows/test_patch_markers.py shows the advance's events).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from tests.api.billing_support import at, call, start_active
from tests.helpers import advance, make_plan, ok
from workflows.messages import workflow_id_for

START = at(2029, 9, 3, 10, 0)
CHARGE = "charge_invoice"


def _charge_markers(events: list[HistoryEvent]) -> list[int]:
    """Indexes of the charge's local-activity markers."""
    found = []
    for i, e in enumerate(events):
        if e.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        attributes = e.marker_recorded_event_attributes
        data = attributes.details.get("data")
        if data and data.payloads and CHARGE.encode() in data.payloads[0].data:
            found.append(i)
    return found


def _accepted(events: list[HistoryEvent], update_name: str) -> int:
    return next(
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        and e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        == update_name
    )


def assert_durable_before_charge(events: list[HistoryEvent], update_name: str) -> None:
    accepted = _accepted(events, update_name)
    charges = [i for i in _charge_markers(events) if i > accepted]
    assert charges, f"no charge after {update_name} was accepted"
    between = [e.event_type for e in events[accepted : charges[0]]]
    # The task that accepted the update completed, and the charge ran in a later one.
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED in between, (
        f"{update_name} charged in the task that accepted it: "
        + ", ".join(EventType.Name(t) for t in between)
    )


async def _history(client: Client, sub_id: str) -> list[HistoryEvent]:
    history = await client.get_workflow_handle(workflow_id_for(sub_id)).fetch_history()
    return list(history.events)


async def test_an_upgrade_is_in_history_before_it_charges(
    app_client: httpx.AsyncClient, temporal_client: Client
) -> None:
    api = app_client
    basic = await make_plan(api, amount=1000)
    plus = await make_plan(api, amount=3000)
    _, clock, sub = await start_active(api, basic, START)
    await advance(api, clock["id"], START + timedelta(days=10))
    changed: dict[str, Any] = ok(await call(api, sub["id"], "change_plan", {"plan_id": plus["id"]}))
    assert changed["invoice"]["status"] == "paid"
    assert_durable_before_charge(await _history(temporal_client, sub["id"]), "change_plan")


async def test_a_payment_retry_is_in_history_before_it_charges(
    app_client: httpx.AsyncClient, temporal_client: Client
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1500)
    customer, clock, sub = await start_active(api, plan, START)
    cards = f"/v1/customers/{customer['id']}/payment_method"
    ok(await api.post(cards, json={"payment_method": "pm_card_chargeCustomerFail"}))
    await advance(api, clock["id"], START + timedelta(days=31))  # the renewal is declined
    # Support retries at once (declined again: the attempt is what matters here).
    outcome = ok(await call(api, sub["id"], "retry_payment"))
    assert outcome["status"] in ("paid", "failed"), outcome
    assert_durable_before_charge(await _history(temporal_client, sub["id"]), "retry_payment")
