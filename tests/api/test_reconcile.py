"""A workflow terminated behind the read model's back is found and repaired.

"Terminate" in the Temporal UI ends a subscription's workflow without letting it record
anything: the read model stays `active` and the customer entitled. The orphan check
counts such subscriptions (/readyz, /metrics) and `reconcile.repair` (what
`recur subs reconcile --repair` runs) records them as canceled.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from temporalio.client import Client

from api import reconcile
from api.observability import ApiMetrics
from api.orphan_check import OrphanCheck
from db.engine import get_engine, session_factory
from tests.api.billing_support import at, events_of, start_active
from tests.conftest import Stack
from tests.helpers import advance, eventually, get_sub, invoices, make_plan, ok
from workflows.messages import workflow_id_for

START = at(2030, 4, 2, 15, 0)


async def _orphan_ids(client: Client, stack: Stack) -> list[str]:
    sessions = session_factory(get_engine(stack.settings.effective_database_url))
    async with sessions() as session:
        return [o.subscription_id for o in await reconcile.find(client, session)]


async def test_a_terminated_workflow_is_found_and_repaired(
    app_client: httpx.AsyncClient, temporal_client: Client, stack: Stack
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1700, features=["studio"])
    customer, clock, sub = await start_active(api, plan, START)
    _, _, kept = await start_active(api, plan, START)
    await advance(api, clock["id"], START + timedelta(days=2))
    await temporal_client.get_workflow_handle(workflow_id_for(sub["id"])).terminate("by hand")

    # Visibility is eventually consistent: the terminated run shows up within moments.
    found = await eventually(
        lambda: _orphan_ids(temporal_client, stack), lambda ids: sub["id"] in ids
    )
    assert kept["id"] not in found
    metrics = ApiMetrics()
    registry = metrics.registry
    check = OrphanCheck(
        session_factory(get_engine(stack.settings.effective_database_url)),
        temporal_client,
        metrics.orphaned_subscriptions,
        interval=3600,
    )
    assert await check.sweep() >= 1
    assert registry.get_sample_value("recur_orphaned_subscriptions") == check.found
    assert (await get_sub(api, sub["id"]))["status"] == "active"  # found, not yet repaired

    sessions = session_factory(get_engine(stack.settings.effective_database_url))
    async with sessions() as session:
        for orphan in await reconcile.find(temporal_client, session):
            if orphan.subscription_id == sub["id"]:
                assert orphan.workflow_status == "TERMINATED"
                await reconcile.repair(session, orphan)
        await session.commit()

    view = await get_sub(api, sub["id"])
    assert view["status"] == "canceled"
    assert view["canceled_at"].startswith("2030-04-04")  # the test clock's time
    entitled = ok(
        await api.get(
            "/v1/entitlements/check", params={"customer_id": customer["id"], "feature": "studio"}
        )
    )
    assert entitled["entitled"] is False
    [canceled] = await events_of(api, sub["id"], "subscription.canceled")
    assert canceled["actor"] == "reconcile"
    assert canceled["data"]["reason"] == "workflow_terminated"
    assert all(i["status"] != "open" for i in await invoices(api, sub["id"]))
    assert sub["id"] not in await _orphan_ids(temporal_client, stack)
    assert (await get_sub(api, kept["id"]))["status"] == "active"


async def test_readyz_reports_the_last_count(app_client: httpx.AsyncClient) -> None:
    body = (await app_client.get("/readyz")).json()
    assert body["ready"] is True
    assert "orphaned_subscriptions" in body
