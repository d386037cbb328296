"""Test clock advances are resumable and report the subscriptions left behind.

An advance sends an update to every subscription on the clock. One subscription that
cannot be advanced must not fail the request for all (nor leave the others unattended),
the same advance may be sent again to finish what a timeout or a crash cut short, and an
advance nobody drives any more is finished by the API's sweeper.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from temporalio.client import Client

from api.clock_sweeper import ClockSweeper
from db.engine import get_engine, session_factory
from tests.api.billing_support import at, start_active
from tests.conftest import Stack
from tests.helpers import advance, get_sub, invoices, make_customer, make_plan, ok, subscribe

START = at(2029, 11, 5, 12, 0)


async def _attach(stack: Stack, sub_id: str, clock_id: str | None) -> None:
    """Point a subscription's read model at a clock its workflow does not run on."""
    engine = get_engine(stack.settings.effective_database_url)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE subscriptions SET test_clock_id = :c WHERE id = :s"),
            {"c": clock_id, "s": sub_id},
        )


async def test_one_subscription_that_cannot_advance_is_reported_not_fatal(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    api = app_client
    plan = await make_plan(api, amount=900)
    _, clock, sub = await start_active(api, plan, START)
    # A subscription on real time, listed on the clock: its workflow refuses the advance.
    stray = await subscribe(api, customer_id=(await make_customer(api))["id"], plan_id=plan["id"])
    await _attach(stack, stray["id"], clock["id"])

    to = START + timedelta(days=31)
    response = await api.post(
        f"/v1/test_clocks/{clock['id']}/advance", json={"frozen_time": to.isoformat()}
    )
    body = ok(response)
    assert body["status"] == "advancing"
    assert [f["subscription_id"] for f in body["advance_failures"]] == [stray["id"]]
    assert body["advance_failures"][0]["code"] == "advance_rejected"
    # The other subscription renewed all the same.
    assert len(await invoices(api, sub["id"])) == 2
    assert (await get_sub(api, sub["id"]))["current_period_start"].startswith("2029-12-05")

    # Once the stray is fixed, the same advance again finishes it; nothing renews twice.
    await _attach(stack, stray["id"], None)
    again = await advance(api, clock["id"], to)
    assert again["status"] == "ready"
    assert again["advance_failures"] == []
    assert len(await invoices(api, sub["id"])) == 2


async def test_an_earlier_time_is_still_refused(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=900)
    _, clock, _ = await start_active(api, plan, START)
    back = await api.post(
        f"/v1/test_clocks/{clock['id']}/advance",
        json={"frozen_time": (START - timedelta(seconds=1)).isoformat()},
    )
    assert back.status_code == 422
    assert back.json()["error"]["code"] == "invalid_frozen_time"


async def test_an_advance_left_behind_is_finished_by_the_sweeper(
    app_client: httpx.AsyncClient, stack: Stack, temporal_client: Client
) -> None:
    api = app_client
    plan = await make_plan(api, amount=900)
    _, clock, sub = await start_active(api, plan, START)
    to = START + timedelta(days=31)
    # What an API process that died mid-advance leaves: the clock moved and `advancing`,
    # its subscriptions not told.
    engine = get_engine(stack.settings.effective_database_url)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE test_clocks SET frozen_time = :t, status = 'advancing',"
                " advance_driven_at = :d WHERE id = :c"
            ),
            {"t": to, "d": datetime.now(UTC) - timedelta(hours=1), "c": clock["id"]},
        )
    assert len(await invoices(api, sub["id"])) == 1

    sweeper = ClockSweeper(
        session_factory(engine),
        temporal_client,
        stack.settings.model_copy(update={"clock_sweep_grace_seconds": 60.0}),
    )
    assert await sweeper.sweep() == 1
    assert ok(await api.get(f"/v1/test_clocks/{clock['id']}"))["status"] == "ready"
    assert len(await invoices(api, sub["id"])) == 2
    assert await sweeper.sweep() == 0  # nothing left to finish
