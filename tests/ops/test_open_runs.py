"""`recur ops open-runs` against the test stack's Temporal dev server: it lists the open
runs of a workflow type (exit 7) or says none is open (exit 0), narrowed by start time and
by a patch the run's history has not taken."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
from temporalio.client import Client

from tests.helpers import make_customer, make_plan, subscribe
from tests.ops.conftest import LiveApi
from tests.ops.test_cli import recur
from workflows.messages import workflow_id_for
from workflows.patches import BUNDLE, DURABLE_UPDATE_CHARGES

# A workflow type nothing in Recur starts (its code was retired): a run of it stands for
# one that an earlier version left open.
RETIRED = "NotifierWorkflow"
NOBODY_POLLS = "open-runs-test"  # no worker takes this queue: the run stays open


async def _open_runs(live: LiveApi, *args: str) -> tuple[int, list[dict[str, Any]]]:
    code, out, err = await recur(live, "ops", "open-runs", *args, "--json")
    assert code in (0, 7), f"{args}: exit {code}\n{out}\n{err}"
    runs: list[dict[str, Any]] = json.loads(out)
    assert (code == 7) == bool(runs), "exit 7 exactly when some run is open"
    return code, runs


async def _eventually_listed(live: LiveApi, workflow_id: str, *args: str) -> dict[str, Any]:
    """The run of `workflow_id` as listed (the visibility store catches up within moments)."""
    for _ in range(100):
        _, runs = await _open_runs(live, *args)
        mine = [r for r in runs if r["workflow_id"] == workflow_id]
        if mine:
            return mine[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} never listed by {args}")


async def test_open_runs_of_a_retired_workflow_type(
    live_api: LiveApi, temporal_client: Client
) -> None:
    type_args = ("--workflow-type", RETIRED)
    code, runs = await _open_runs(live_api, *type_args)
    assert (code, runs) == (0, []), "nothing has started one"
    code, out, _ = await recur(live_api, "ops", "open-runs", *type_args)
    assert code == 0 and "(none)" in out

    workflow_id = f"notify/sub_{uuid.uuid4().hex[:12]}"
    handle = await temporal_client.start_workflow(
        RETIRED, {"subscription_id": "x"}, id=workflow_id, task_queue=NOBODY_POLLS
    )
    try:
        listed = await _eventually_listed(live_api, workflow_id, *type_args)
        assert listed["run_id"] == handle.result_run_id
        code, out, _ = await recur(live_api, "ops", "open-runs", *type_args)
        assert code == 7 and workflow_id in out, "the table names the open run"

        started = (await handle.describe()).start_time
        before = (started - timedelta(seconds=1)).isoformat(timespec="seconds")
        after = (started + timedelta(seconds=2)).isoformat(timespec="seconds")
        assert await _open_runs(live_api, *type_args, "--started-before", before) == (0, [])
        code, runs = await _open_runs(live_api, *type_args, "--started-before", after)
        assert code == 7 and [r["workflow_id"] for r in runs] == [workflow_id]

        # Its history has no patch marker at all: it has not taken any patch.
        code, runs = await _open_runs(live_api, *type_args, "--without-patch", "local-email")
        assert code == 7 and runs[0]["patches"] == []
    finally:
        await handle.terminate("open-runs test")
    for _ in range(100):
        code, runs = await _open_runs(live_api, *type_args)
        if code == 0:
            break
        await asyncio.sleep(0.1)
    assert (code, runs) == (0, []), "a terminated run is no longer open"


async def test_without_patch_reads_the_markers_and_the_bundles(
    live_api: LiveApi, app_client: httpx.AsyncClient
) -> None:
    plan = await make_plan(app_client, amount=700)
    customer = await make_customer(app_client)
    sub = await subscribe(app_client, customer_id=customer["id"], plan_id=plan["id"])
    workflow_id = workflow_id_for(sub["id"])
    type_args = ("--workflow-type", "SubscriptionWorkflow")

    listed = await _eventually_listed(
        live_api, workflow_id, *type_args, "--without-patch", "a-patch-nobody-made"
    )
    assert listed["patches"] == [BUNDLE], "a new run records the newest bundle, once"
    # A patch inside that bundle counts as taken though the run has no marker of its own.
    _, runs = await _open_runs(live_api, *type_args, "--without-patch", DURABLE_UPDATE_CHARGES)
    assert workflow_id not in {r["workflow_id"] for r in runs}
    _, runs = await _open_runs(live_api, *type_args, "--without-patch", BUNDLE)
    assert workflow_id not in {r["workflow_id"] for r in runs}


async def test_a_bad_workflow_type_is_a_usage_error(live_api: LiveApi) -> None:
    code, _, err = await recur(live_api, "ops", "open-runs", "--workflow-type", "X' OR 'a'='a")
    assert code == 2 and "not a workflow type" in err
