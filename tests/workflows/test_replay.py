"""Replay: today's workflow code must reproduce the decisions of recorded histories.

`tests/histories/*.json` hold real histories of SubscriptionWorkflow runs. A change that
would break running subscriptions (a new activity call, a reordered timer) fails here
unless it is guarded by `workflow.patched`. To record fresh histories after a deliberate,
patched change: `RECUR_RECORD_HISTORIES=1 .venv/bin/pytest tests/workflows/test_replay.py`.
Files named `v1-*` to `v9-*` were recorded by earlier versions and are kept as they are: they
stand for subscriptions still running on old code (v1: before the final-projection patch; v2:
a run per renewal, charge and projection as remote activities; v3: a trial started by
update-with-start and projected by the workflow, where the API now starts it from the state
it projected itself; v4: a paid renewal projected by a local activity of its own after the
charge, where the charge activity now writes it; v5: the same for a first payment; v6: each
patch asked for on its own, where a run now asks once for the bundle, `workflows.patches`;
v7: the first bundle, where a charge caused by an update ran in the update's own task; v8:
the second bundle, before items: one plan at quantity 1, a net credit carried to the next
invoice as `credit` lines; `v8-discounts` holds discounts on it, its proration priced on the
discounted plan; v9: a run with a metered item whose preview of the renewal showed no usage,
before USAGE_IN_PREVIEWS).
`discounts-run*.json` is a run of two items that holds discounts (a repeating percent limited
to one plan from a promotion code, seats added under it, its end on the clock, a replacement
by an amount off, seats removed now with the credit to the balance, a removal): with
`v8-discounts`, the only kind of run that asks for the DISCOUNTS patch. A file leaves this
directory when the code path it replays is removed (README, "Retiring a patch").
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from tests.helpers import (
    advance,
    eventually,
    get_sub,
    make_clock,
    make_customer,
    make_plan,
    ok,
    subscribe,
)
from workflows.converter import data_converter
from workflows.messages import workflow_id_for
from workflows.subscription import SubscriptionWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


def _replayer() -> Replayer:
    return Replayer(workflows=[SubscriptionWorkflow], data_converter=data_converter)


RECORDED = sorted(HISTORIES.glob("*.json"))


def test_histories_are_recorded() -> None:
    assert RECORDED, "no recorded histories in tests/histories"


# One test per file, so one history that no longer replays does not hide the others.
@pytest.mark.parametrize("path", RECORDED, ids=[path.stem for path in RECORDED])
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def _all_runs(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    runs = [wf async for wf in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
    runs.sort(key=lambda wf: wf.start_time)
    return [
        await client.get_workflow_handle(workflow_id, run_id=wf.run_id).fetch_history()
        for wf in runs
    ]


async def _lifecycle_scenario(api: httpx.AsyncClient) -> str:
    """Trial, activation, an upgrade, renewals past a continue-as-new, a scheduled cancel."""
    start = datetime(2029, 1, 31, 8, 0, tzinfo=UTC)
    basic = await make_plan(api, amount=1000, trial_days=3, features=["posts"])
    plus = await make_plan(api, amount=2500, features=["posts", "archive"])
    customer = await make_customer(api)
    clock = await make_clock(api, start)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=basic["id"], test_clock_id=clock["id"]
    )
    await advance(api, clock["id"], start + timedelta(days=3))
    await advance(api, clock["id"], start + timedelta(days=40))
    path = f"/v1/subscriptions/{sub['id']}"
    ok(await api.post(f"{path}/change_plan", json={"plan_id": plus["id"]}))
    # Fourteen more renewals: past PERIODS_PER_RUN, so the run continues as new.
    await advance(api, clock["id"], start + timedelta(days=40 + 14 * 31))
    ok(await api.post(f"{path}/cancel", json={"at_period_end": True}))
    await advance(api, clock["id"], start + timedelta(days=40 + 15 * 31))
    return str(sub["id"])


async def _dunning_pause_refund_scenario(api: httpx.AsyncClient) -> str:
    """Renewal failure and recovery, a scheduled downgrade, pause/resume, cancel with refund."""
    start = datetime(2029, 5, 10, 8, 0, tzinfo=UTC)
    big = await make_plan(api, amount=3000, features=["posts", "archive"])
    small = await make_plan(api, amount=1000, features=["posts"])
    customer = await make_customer(api)
    clock = await make_clock(api, start)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=big["id"], test_clock_id=clock["id"]
    )
    path = f"/v1/subscriptions/{sub['id']}"
    cards = f"/v1/customers/{customer['id']}/payment_method"
    ok(await api.post(cards, json={"payment_method": "pm_card_chargeCustomerFail"}))
    await advance(api, clock["id"], datetime(2029, 6, 11, 8, 0, tzinfo=UTC))
    ok(await api.post(cards, json={"payment_method": "pm_card_visa"}))
    await eventually(lambda: get_sub(api, sub["id"]), lambda s: s["status"] == "active")
    ok(await api.post(f"{path}/change_plan", json={"plan_id": small["id"]}))
    await advance(api, clock["id"], datetime(2029, 7, 12, 8, 0, tzinfo=UTC))
    ok(await api.post(f"{path}/pause", json={}))
    await advance(api, clock["id"], datetime(2029, 7, 20, 8, 0, tzinfo=UTC))
    ok(await api.post(f"{path}/resume"))
    ok(await api.post(f"{path}/cancel", json={"at_period_end": False, "refund": "prorated"}))
    return str(sub["id"])


async def _discounts_scenario(api: httpx.AsyncClient) -> str:
    """Two items under a repeating percent coupon limited to one plan, redeemed with a
    promotion code; seats added under it (prorated on the discounted total), its end on the
    clock, a replacement by an amount off, seats removed now (the credit to the balance, used
    by the next renewal), its removal."""
    start = datetime(2029, 3, 1, 8, 0, tzinfo=UTC)
    seat = await make_plan(api, amount=1000, features=["posts"])
    addon = await make_plan(api, amount=500, features=["archive"])
    deal = ok(
        await api.post(
            "/v1/coupons",
            json={
                "name": "Spring",
                "percent_off": 25,
                "duration": "repeating",
                "duration_in_months": 2,
                "applies_to_plans": [seat["id"]],
            },
        ),
        201,
    )
    code = f"SPRING{uuid.uuid4().hex[:8]}"
    ok(await api.post("/v1/promotion_codes", json={"code": code, "coupon_id": deal["id"]}), 201)
    off = ok(
        await api.post(
            "/v1/coupons",
            json={"name": "Off", "amount_off": 300, "currency": "usd", "duration": "forever"},
        ),
        201,
    )
    customer = await make_customer(api)
    clock = await make_clock(api, start)
    sub = await subscribe(
        api,
        customer_id=customer["id"],
        items=[{"plan_id": seat["id"], "quantity": 2}, {"plan_id": addon["id"]}],
        test_clock_id=clock["id"],
        promotion_code=code.lower(),
    )
    path = f"/v1/subscriptions/{sub['id']}"
    await advance(api, clock["id"], start + timedelta(days=10))
    items = [{"plan_id": seat["id"], "quantity": 3}, {"plan_id": addon["id"]}]
    ok(await api.post(f"{path}/update_items", json={"items": items}))
    await advance(api, clock["id"], datetime(2029, 5, 2, 8, 0, tzinfo=UTC))
    ok(await api.post(f"{path}/discount", json={"coupon_id": off["id"]}))
    await advance(api, clock["id"], datetime(2029, 5, 16, 8, 0, tzinfo=UTC))
    items = [{"plan_id": seat["id"], "quantity": 1}, {"plan_id": addon["id"]}]
    ok(await api.post(f"{path}/update_items", json={"items": items, "when": "now"}))
    await advance(api, clock["id"], datetime(2029, 6, 2, 8, 0, tzinfo=UTC))
    ok(await api.delete(f"{path}/discount"))
    await advance(api, clock["id"], datetime(2029, 7, 2, 8, 0, tzinfo=UTC))
    return str(sub["id"])


async def _items_scenario(api: httpx.AsyncClient) -> str:
    """Two items, seats up now (charged), seats down now (credit to the balance), a change
    of items at the period end, renewals that use the balance, a plan change."""
    start = datetime(2029, 9, 1, 8, 0, tzinfo=UTC)
    seat = await make_plan(api, amount=800, features=["posts"])
    addon = await make_plan(api, amount=300, features=["archive"])
    other = await make_plan(api, amount=1200, features=["posts"])
    customer = await make_customer(api)
    clock = await make_clock(api, start)
    sub = await subscribe(
        api,
        customer_id=customer["id"],
        items=[{"plan_id": seat["id"], "quantity": 3}, {"plan_id": addon["id"]}],
        test_clock_id=clock["id"],
    )
    path = f"/v1/subscriptions/{sub['id']}"
    await advance(api, clock["id"], start + timedelta(days=10))
    items = [{"plan_id": seat["id"], "quantity": 5}, {"plan_id": addon["id"]}]
    ok(await api.post(f"{path}/update_items", json={"items": items}))
    items = [{"plan_id": seat["id"], "quantity": 2}, {"plan_id": addon["id"]}]
    ok(await api.post(f"{path}/update_items", json={"items": items, "when": "now"}))
    ok(await api.post(f"{path}/update_items", json={"items": [{"plan_id": seat["id"]}]}))
    await advance(api, clock["id"], start + timedelta(days=45))
    ok(await api.post(f"{path}/change_plan", json={"plan_id": other["id"]}))
    await advance(api, clock["id"], start + timedelta(days=80))
    return str(sub["id"])


async def _usage_scenario(api: httpx.AsyncClient) -> str:
    """A licensed and a metered item: usage, a preview of the renewal (with the usage so
    far), a renewal that waits the usage grace and bills the ended period's usage in
    arrears (a late event counted), then a cancel that bills the final usage."""
    start = datetime(2029, 11, 1, 8, 0, tzinfo=UTC)
    meter = ok(
        await api.post(
            "/v1/meters",
            json={"name": "Calls", "event_name": "call", "aggregation": "count"},
        ),
        201,
    )
    seat = await make_plan(api, amount=900)
    metered = await make_plan(
        api, usage_type="metered", meter_id=meter["id"], amount=40, package_size=5
    )
    customer = await make_customer(api)
    clock = await make_clock(api, start)
    sub = await subscribe(
        api,
        customer_id=customer["id"],
        items=[{"plan_id": seat["id"]}, {"plan_id": metered["id"]}],
        test_clock_id=clock["id"],
    )

    def call(tx: str, when: datetime) -> dict[str, object]:
        return {
            "transaction_id": tx,
            "customer_id": customer["id"],
            "event_name": "call",
            "timestamp": when.isoformat(),
            "properties": {},
        }

    events = [call(f"a{i}", start + timedelta(days=1)) for i in range(7)]
    ok(await api.post("/v1/usage_events/batch", json={"events": events}), 202)
    more = {"items": [{"plan_id": seat["id"], "quantity": 2}, {"plan_id": metered["id"]}]}
    path = f"/v1/subscriptions/{sub['id']}/update_items"
    ok(await api.post(path, json=more | {"preview": True, "proration": "create_prorations"}))
    end = datetime(2029, 12, 1, 8, 0, tzinfo=UTC)
    await advance(api, clock["id"], end + timedelta(minutes=20))
    ok(await api.post("/v1/usage_events", json=call("late", end - timedelta(hours=1))), 202)
    await advance(api, clock["id"], end + timedelta(days=5))
    ok(await api.post("/v1/usage_events", json=call("b", end + timedelta(days=4))), 202)
    cancel = {"at_period_end": False}
    ok(await api.post(f"/v1/subscriptions/{sub['id']}/cancel", json=cancel))
    return str(sub["id"])


SCENARIOS = {
    "items": _items_scenario,
    "usage": _usage_scenario,
    "lifecycle": _lifecycle_scenario,
    "dunning-pause-refund": _dunning_pause_refund_scenario,
    "discounts": _discounts_scenario,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_fresh_histories_replay_and_can_be_recorded(
    app_client: httpx.AsyncClient, temporal_client: Client, name: str
) -> None:
    subscription_id = await SCENARIOS[name](app_client)
    histories = await _all_runs(temporal_client, workflow_id_for(subscription_id))
    if name == "lifecycle":
        assert len(histories) >= 2, "the scenario should span a continue-as-new"
    replayer = _replayer()
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, result.replay_failure
    if os.environ.get("RECUR_RECORD_HISTORIES") == "1":
        HISTORIES.mkdir(exist_ok=True)
        for n, history in enumerate(histories):
            (HISTORIES / f"{name}-run{n}.json").write_text(history.to_json())
