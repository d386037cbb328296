"""What an operator reads of a subscription in the Temporal UI stays true.

The static summary holds only what never changes (the subscription and its customer); the
current details, refreshed at every projection, show the plan as it is now, the customer's
email, an open invoice and what is due, the last decline, and how the subscription ended.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle

from tests.api.billing_support import at, call, start_active
from tests.helpers import advance, make_plan, ok
from workflows.messages import workflow_id_for

START = at(2030, 8, 5, 10, 0)


async def _details(handle: WorkflowHandle) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def test_the_ui_shows_current_facts(
    app_client: httpx.AsyncClient, temporal_client: Client
) -> None:
    api = app_client
    basic = await make_plan(api, amount=1000, name="Basic tier")
    plus = await make_plan(api, amount=2500, name="Plus tier")
    customer, clock, sub = await start_active(api, basic, START)
    handle = temporal_client.get_workflow_handle(workflow_id_for(sub["id"]))
    description = await handle.describe()
    summary = await description.static_summary()
    assert summary is not None and "tier" not in summary, "nothing that changes"
    assert customer["email"] in (await description.static_details() or "")

    ok(await call(api, sub["id"], "change_plan", {"plan_id": plus["id"]}))
    details = await _details(handle)
    assert "Plus tier" in details and "Basic tier" not in details
    assert customer["email"] in details

    cards = f"/v1/customers/{customer['id']}/payment_method"
    ok(await api.post(cards, json={"payment_method": "pm_card_chargeCustomerFail"}))
    await advance(api, clock["id"], START + timedelta(days=31))
    details = await _details(handle)
    assert "**past_due**" in details
    assert "open invoice `in_" in details and "25.00 USD due" in details
    assert "last decline: `" in details

    ok(await call(api, sub["id"], "cancel", {"at_period_end": False}))
    details = await _details(handle)
    assert "canceled 2030-09-05" in details and "(requested)" in details
