"""SIGTERM during a charge: the worker finishes the activity, exits cleanly, nothing is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from aiohttp import ClientSession, web
from temporalio.client import Client

from activities.stripe_gateway import StripeGateway
from api import lifecycle
from devstack.process import free_port
from tests.conftest import Stack
from tests.helpers import activity_attempts, invoices, make_customer, make_plan
from tests.ops.conftest import LiveApi
from worker import build_worker
from workflows.messages import SubscriptionInput, workflow_id_for

SLOW_SECONDS = 3.0


@asynccontextmanager
async def slow_stripe(upstream: str, charge_started: asyncio.Event) -> AsyncIterator[str]:
    """A loopback proxy to localstripe that holds PaymentIntent creation for a few seconds."""

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        if request.method == "POST" and request.path == "/v1/payment_intents":
            charge_started.set()
            await asyncio.sleep(SLOW_SECONDS)
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
        }
        async with (
            ClientSession() as session,
            session.request(
                request.method, upstream + request.path_qs, data=body, headers=headers
            ) as reply,
        ):
            payload = await reply.read()
            return web.Response(status=reply.status, body=payload, content_type=reply.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_sigterm_lets_the_inflight_charge_finish(
    live_api: LiveApi, app_client: httpx.AsyncClient, temporal_client: Client, stack: Stack
) -> None:
    api = app_client
    plan = await make_plan(api, amount=3300)
    customer = await make_customer(api, "pm_card_visa")
    queue = "recur-sigterm"
    metrics_port = free_port()
    charge_started = asyncio.Event()
    upstream = stack.settings.effective_stripe_api_base
    assert upstream is not None

    async with slow_stripe(upstream, charge_started) as proxy:
        env = {
            **live_api.env,
            "RECUR_TASK_QUEUE": queue,
            "RECUR_STRIPE_API_BASE": proxy,
            "RECUR_WORKER_METRICS_PORT": str(metrics_port),
            "RECUR_LOG_LEVEL": "INFO",
        }
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "worker",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        settings = stack.settings.model_copy(update={"task_queue": queue})
        inp = SubscriptionInput(
            subscription_id=f"sub_sigterm{os.getpid()}",
            customer_id=customer["id"],
            plan=lifecycle.plan_snapshot(type("P", (), {**plan, "id": plan["id"]})()),
            policy=lifecycle.billing_policy(settings),
        )
        started = asyncio.create_task(lifecycle.start_subscription(temporal_client, settings, inp))
        await asyncio.wait_for(charge_started.wait(), timeout=60)

        async with httpx.AsyncClient() as client:
            scraped = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
        assert "temporal_" in scraped, "the worker exposes SDK metrics for Prometheus"

        worker.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(worker.communicate(), timeout=60)
        log = output.decode()
        assert worker.returncode == 0, log
        assert "worker.stopping" in log and "worker.stopped" in log
        assert '"event_loop": "uvloop"' in log, "the worker runs on the configured loop"
        assert "charge.finished" in log, "the in-flight charge completed before exit"

        # Another worker picks up the rest of the workflow (the projection after the charge).
        replacement, _ = build_worker(temporal_client, settings)
        async with replacement:
            view = await asyncio.wait_for(started, timeout=60)
    assert view.status == "active"

    [invoice] = await invoices(api, inp.subscription_id)
    assert invoice["status"] == "paid"
    assert [a["status"] for a in invoice["attempts"]] == ["succeeded"]
    gateway = StripeGateway.from_settings(stack.settings)
    assert (
        await gateway.count_succeeded_payments(
            stripe_customer_id=customer["stripe_customer_id"],
            idempotency_prefix=f"{inp.subscription_id}:",
        )
        == 1
    )
    history = await temporal_client.get_workflow_handle(
        workflow_id_for(inp.subscription_id)
    ).fetch_history()
    assert activity_attempts(history, "charge_invoice") == [1], (
        "the charge finished on its first attempt, no retry was needed"
    )
