"""Builds and runs the Temporal worker (the subscription workflow and its activities) and,
beside it in the same process, the outbox dispatcher that sends webhooks and emails and the
Stripe inbox drainer that hands Stripe's events to the workflows."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import TypedDict

import structlog
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.dispatcher import OutboxDispatcher
from activities.ledger import LedgerActivities
from activities.notifications import Deliveries
from activities.payments import PaymentActivities
from activities.stripe_gateway import StripeGateway
from activities.stripe_inbox import StripeInbox
from activities.usage import UsageActivities
from config import Settings, configure_gc, configure_logging, get_settings, run_loop
from db.engine import get_worker_engine
from workflows.converter import data_converter
from workflows.subscription import SubscriptionWorkflow

log = structlog.get_logger()


async def connect_temporal(settings: Settings, runtime: Runtime | None = None) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter,
        runtime=runtime,
    )


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime that serves SDK and business metrics for Prometheus."""
    if not settings.worker_metrics_port:
        return None
    # Loopback unless configured: the endpoint has no authentication.
    bind = f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind)))


# Modules imported once and shared with every workflow run's sandbox instead of being
# re-imported per run (continue-as-new makes a run per renewal). Only pure, deterministic
# modules without mutable module state belong here: the sandbox's import-time checks do
# not apply to them. The workflow definitions themselves stay sandboxed. Measured in
# bench/RESULTS.md (renewal storm, "original" vs default sandbox): about half the worker
# CPU per renewal and a third less worker memory.
SANDBOX_PASSTHROUGH = (
    "domain",
    "pydantic",
    "workflows.messages",
    "workflows.search_attributes",
    "workflows.errors",
    "workflows.clock",
    "workflows.details",
    "workflows.invoicing",
    "workflows.plan_changes",
)


def workflow_runner(settings: Settings) -> WorkflowRunner:
    """No sandbox (default), or the SDK's determinism sandbox when RECUR_WORKFLOW_SANDBOX=true.

    Without the sandbox nothing checks at run time that workflow code stays deterministic;
    the test suite (always sandboxed), the replay test over recorded histories and the
    static check of workflows/ (tests/workflows/test_workflow_determinism.py) do, before
    code ships. With it, domain/ and the workflows' pure helper modules are shared with
    the sandbox instead of being re-imported (pydantic models included) for every
    workflow run; see SANDBOX_PASSTHROUGH.
    """
    if not settings.workflow_sandbox:
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH)
    )


class WorkerOptions(TypedDict):
    """How a worker runs workflows, as `temporalio.worker.Worker` keyword arguments."""

    workflow_runner: WorkflowRunner
    max_cached_workflows: int
    graceful_shutdown_timeout: timedelta


def worker_options(settings: Settings) -> WorkerOptions:
    """Recur's worker settings: the workflow runner, the sticky cache, the drain on
    shutdown. The benchmarks' bare baseline workers run with these too (bench/worker_proc.py),
    so a ratio compares workflow code, not worker configurations."""
    return WorkerOptions(
        workflow_runner=workflow_runner(settings),
        max_cached_workflows=settings.worker_max_cached_workflows,
        graceful_shutdown_timeout=timedelta(seconds=30),
    )


@dataclass
class WorkerParts:
    payments: PaymentActivities
    ledger: LedgerActivities
    deliveries: Deliveries
    dispatcher: OutboxDispatcher
    stripe_inbox: StripeInbox


def build_worker(client: Client, settings: Settings) -> tuple[Worker, WorkerParts]:
    """The worker, and the parts that run beside it: start `parts.dispatcher` and
    `parts.stripe_inbox` with it."""
    engine = get_worker_engine(settings.effective_database_url)
    deliveries = Deliveries(engine, settings)
    dispatcher = OutboxDispatcher.from_settings(engine, deliveries, settings)
    ledger = LedgerActivities(engine, dispatcher.wake)
    parts = WorkerParts(
        payments=PaymentActivities(engine, StripeGateway.from_settings(settings), ledger.project),
        ledger=ledger,
        deliveries=deliveries,
        dispatcher=dispatcher,
        stripe_inbox=StripeInbox.from_settings(engine, client, settings, dispatcher.wake),
    )
    usage = UsageActivities(engine)
    worker = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[SubscriptionWorkflow],
        activities=[
            parts.payments.charge_invoice,
            parts.payments.refund_invoice,
            parts.ledger.sync_subscription,
            usage.usage_lines,
            usage.usage_so_far,
        ],
        **worker_options(settings),
    )
    return worker, parts


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging(settings)
    client = await connect_temporal(settings, metrics_runtime(settings))
    worker, parts = build_worker(client, settings)
    configure_gc(settings.worker_gc_threshold)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker.started",
        task_queue=settings.task_queue,
        temporal=settings.temporal_address,
        event_loop=type(loop).__module__.partition(".")[0],  # uvloop | asyncio
    )
    async with worker:
        parts.dispatcher.start()
        parts.stripe_inbox.start()
        await stop.wait()
        log.info("worker.stopping", reason="signal")
        await parts.stripe_inbox.stop()
        await parts.dispatcher.stop()
    log.info("worker.stopped")
    # After the dispatcher: it sends through these deliveries.
    await parts.deliveries.aclose()
    await parts.payments.aclose()
    await get_worker_engine(settings.effective_database_url).dispose()


def main() -> None:
    settings = get_settings()
    run_loop(run_worker(settings), settings)
    # Every activity has finished and the pools are closed. Exit without interpreter
    # finalization, which can abort while the SDK's native threads are winding down.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
