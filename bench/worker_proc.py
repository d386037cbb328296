"""The benchmark worker process: Recur's worker and the bare baseline worker side by side.

    python -m bench.worker_proc [--tune max_cached_workflows=2000 ...]

Settings come from the `RECUR_*` environment (the harness sets them). Both workers share
this process, its Temporal client and its event loop (`config.run_loop`, as `recur worker`),
and both take their worker settings from `worker.worker_options`: the same workflow runner
(unsandboxed unless RECUR_WORKFLOW_SANDBOX=true), sticky cache size and shutdown, so a Recur
figure and its bare baseline are measured on the same server, the same worker process, the
same cores and the same configuration. `--sandbox` changes the runner of both.
`--tune NAME=VALUE` passes extra keyword arguments to Recur's `temporalio.worker.Worker`
only (what a tuning of `worker.py` would change) without editing it. Prints `READY` once
both workers poll; SIGTERM or SIGINT stops them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from datetime import timedelta
from typing import Any

from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import worker as recur_worker
from bench.baseline import (
    BARE_TASK_QUEUE,
    BareRenewalWorkflow,
    TrivialWorkflow,
    bench_noop,
)
from config import Settings, configure_gc, configure_logging, run_loop


def parse_tuning(items: list[str]) -> dict[str, Any]:
    """`name=value` pairs; integers and timedeltas (`...s` suffix) are converted."""
    out: dict[str, Any] = {}
    for item in items:
        name, _, raw = item.partition("=")
        value: Any = raw
        if raw.endswith("s") and _is_number(raw[:-1]):
            value = timedelta(seconds=float(raw[:-1]))
        elif raw.isdigit():
            value = int(raw)
        elif _is_number(raw):
            value = float(raw)
        elif raw in ("true", "false"):
            value = raw == "true"
        out[name] = value
    return out


def _is_number(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return True


def sandbox_runner(spec: str) -> Any:
    """`--sandbox`, for Recur's worker and the bare one alike: `default` (worker.py's,
    from the settings), `original` (only `domain` and `pydantic`
    passed through, as worker.py had it before the benchmarks), `unsandboxed`, `all`
    (pass every module through), or a comma-separated list of modules to pass through
    besides `domain` and `pydantic`."""
    if spec == "default":
        return None
    if spec == "unsandboxed":
        return UnsandboxedWorkflowRunner()
    restrictions = SandboxRestrictions.default.with_passthrough_modules("domain", "pydantic")
    if spec == "original":
        return SandboxedWorkflowRunner(restrictions=restrictions)
    if spec == "all":
        return SandboxedWorkflowRunner(restrictions=restrictions.with_passthrough_all_modules())
    extra = [m.strip() for m in spec.split(",") if m.strip()]
    return SandboxedWorkflowRunner(restrictions=restrictions.with_passthrough_modules(*extra))


def _with_tuning(tuning: dict[str, Any]) -> None:
    """Make `worker.build_worker` construct its Worker with the extra keyword arguments."""
    if not tuning:
        return
    original = recur_worker.Worker

    def tuned(*args: Any, **kwargs: Any) -> Worker:
        return original(*args, **{**kwargs, **tuning})

    recur_worker.Worker = tuned  # type: ignore[assignment,misc]


def bare_options(settings: Settings, sandbox: str) -> recur_worker.WorkerOptions:
    """The bare worker's settings: Recur's (`worker.worker_options`), with the runner
    `--sandbox` names when it names one."""
    options = recur_worker.worker_options(settings)
    if (runner := sandbox_runner(sandbox)) is not None:
        options["workflow_runner"] = runner
    return options


async def main(tuning: dict[str, Any], bare_queue: str, sandbox: str) -> None:
    settings = Settings()
    configure_logging(settings)
    client = await recur_worker.connect_temporal(settings)
    if (runner := sandbox_runner(sandbox)) is not None:
        tuning = {**tuning, "workflow_runner": runner}
    _with_tuning(tuning)
    recur, parts = recur_worker.build_worker(client, settings)
    bare = Worker(
        client,
        task_queue=bare_queue,
        workflows=[BareRenewalWorkflow, TrivialWorkflow],
        activities=[bench_noop],
        **bare_options(settings, sandbox),
    )
    configure_gc(settings.worker_gc_threshold)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with recur, bare:
        parts.dispatcher.start()
        print("READY", flush=True)
        await stop.wait()
        await parts.dispatcher.stop()
    await parts.deliveries.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tune", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--bare-queue", default=BARE_TASK_QUEUE)
    parser.add_argument("--sandbox", default="default", help=sandbox_runner.__doc__)
    args = parser.parse_args()
    # On the event loop `recur worker` runs on (config.run_loop): the bare workers share
    # this process, so they run on it too.
    run_loop(main(parse_tuning(args.tune), args.bare_queue, args.sandbox), Settings())
    sys.stdout.flush()
    os._exit(0)
