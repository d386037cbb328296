"""A projection that keeps failing never wedges a subscription silently (issue #17, finding
4): each failed attempt is counted in `recur_projection_failures` (Prometheus, as the
worker serves it) and logged as `projection.failed` with the subscription id; once the
cause is fixed the retried activity writes the projection and says it recovered.

Run on a database of its own (`scratch`), where a trigger stands for a cause that lasts."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment

from activities.ledger import LedgerActivities
from devstack.process import free_port
from domain.contracts import SubscriptionView, SyncRequest

REFUSE = """
CREATE FUNCTION refuse_subscription() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'refused for the test'; END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse BEFORE INSERT ON subscriptions
FOR EACH ROW EXECUTE FUNCTION refuse_subscription();
"""


def _request(sub_id: str) -> SyncRequest:
    now = datetime.now(UTC)
    view = SubscriptionView(
        id=sub_id,
        customer_id="cus_projection_failures",
        plan_id="plan_x",
        status="active",
        billing_cycle_anchor=now,
        created_at=now,
        state_version=1,
    )
    return SyncRequest(subscription=view, events=[])


def _failures(port: int) -> float:
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in scraped.splitlines()
        if line.startswith("recur_projection_failures") and not line.startswith("#")
    ]
    return sum(values)


async def test_a_failing_projection_is_counted_logged_and_repaired_by_its_retry(
    scratch: AsyncEngine,
) -> None:
    async with scratch.begin() as conn:
        for statement in REFUSE.split(";\n"):
            if statement.strip():
                await conn.execute(text(statement))
    port = free_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{port}"))
    )
    env = ActivityEnvironment()
    env.metric_meter = runtime.metric_meter
    ledger = LedgerActivities(scratch)
    sub_id = f"sub_{uuid.uuid4().hex[:12]}"

    for attempt in (1, 2):
        env.info = dataclasses.replace(env.info, attempt=attempt, activity_type="sync_subscription")
        with capture_logs() as logs, pytest.raises(Exception, match="refused for the test"):
            await env.run(ledger.sync_subscription, _request(sub_id))
        (failed,) = [e for e in logs if e["event"] == "projection.failed"]
        assert failed["log_level"] == "error"
        assert failed["subscription_id"] == sub_id and failed["attempt"] == attempt
        assert failed["error"] == "RaiseException" and failed["sqlstate"] == "P0001"
    assert _failures(port) == 2

    # The operator fixes the cause; the activity's next retry repairs the subscription.
    async with scratch.begin() as conn:
        await conn.execute(text("DROP TRIGGER refuse ON subscriptions"))
    env.info = dataclasses.replace(env.info, attempt=3)
    with capture_logs() as logs:
        await env.run(ledger.sync_subscription, _request(sub_id))
    (recovered,) = [e for e in logs if e["event"] == "projection.recovered"]
    assert recovered["log_level"] == "warning"
    assert recovered["subscription_id"] == sub_id and recovered["attempt"] == 3
    async with scratch.connect() as conn:
        status = await conn.scalar(
            text("SELECT status FROM subscriptions WHERE id = :id"), {"id": sub_id}
        )
    assert status == "active"
    assert _failures(port) == 2
