"""Lifecycle API latency: a real uvicorn server on loopback, 20 concurrent clients.

    .venv/bin/python -m bench.api_latency --requests 1000

Starts its own stack on free loopback ports, the worker process (`bench.worker_proc`) and
the API exactly as `recur api` serves it (uvicorn, one process, no access log) in a
process of its own. Then, one phase after the other, each with `--clients` concurrent
clients (default 20) sending `--requests` requests in all after a short warm-up:

* bare: `client.start_workflow` of a trivial workflow, from this process (the baseline;
  the trivial workflow runs on the bare worker, with Recur's worker settings: the same
  workflow runner, sticky cache and event loop, `bench.worker_proc`),
  once before and once after the create row: the VM's speed drifts within minutes, and
  the baseline is the requests of both rows over the time of both;
* `POST /v1/subscriptions` with a 14-day trial (a new subscription workflow each);
* bare: `execute_update_with_start` of the trivial workflow (what the API's create does
  for a subscription without a trial, minus Recur: start, run the first task, answer an
  update);
* `POST /v1/subscriptions/{id}/change_plan` with `preview: true` (an upgrade quote, on
  active subscriptions created beforehand);
* `GET /v1/subscriptions/{id}`.

Prints p50/p95/p99 and requests/s and appends them to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from api.bootstrap import ensure_admin_key
from bench.baseline import BARE_TASK_QUEUE, TrivialWorkflow
from bench.common import (
    ADMIN_KEY,
    CpuMeter,
    PySpy,
    Stack,
    WorkerProcess,
    append_results,
    load,
    log,
    percentile,
    quiet_driver_logs,
    remove_stack,
    spawn,
    start_stack,
    table,
    top_frames,
    wait_quiet,
)
from config import Settings, run_loop
from db.engine import get_engine
from devstack.process import free_port, wait_until
from worker import connect_temporal

Call = Callable[[int], Awaitable[None]]


class ApiServer:
    """`recur api` (uvicorn, one process, no access log), in its own process."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        log_path = self.stack.base / "api.log"
        argv = [sys.executable, "-m", "cli", "api", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = spawn(self.stack, argv, log_path)

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(log_path.read_text(errors="replace")[-3000:])
            import urllib.request

            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as reply:
                    return bool(reply.status == 200)
            except OSError:
                return False

        wait_until(ready, "the API server", timeout=60)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


async def run(args: argparse.Namespace) -> int:
    quiet_driver_logs()
    deadline = time.monotonic() + args.timeout
    stack = start_stack(args.log_level, bytecode=not args.no_bytecode)
    worker: WorkerProcess | None = None
    server: ApiServer | None = None
    try:
        worker = WorkerProcess(stack, args.tune, sandbox=args.sandbox).start()
        await ensure_admin_key(get_engine(stack.settings.effective_database_url), ADMIN_KEY)
        server = ApiServer(stack).start()
        return await asyncio.wait_for(
            measure(args, stack, worker, server), deadline - time.monotonic()
        )
    finally:
        if server is not None:
            server.stop()
        if worker is not None:
            worker.stop()
        remove_stack(stack, args.keep)


async def phase(
    name: str,
    call: Call,
    args: argparse.Namespace,
    stack: Stack,
    worker: WorkerProcess,
    server: ApiServer,
) -> dict[str, Any]:
    """`args.requests` calls from `args.clients` concurrent clients, after a warm-up."""
    counter = iter(range(10**9))

    async def clients(total: int, latencies: list[float], errors: list[str]) -> None:
        async def client() -> None:
            while (i := next(counter)) < total:
                t = time.perf_counter()
                try:
                    await call(i)
                except Exception as err:  # counted and reported, never hidden
                    errors.append(f"{type(err).__name__}: {str(err)[:200]}")
                    continue
                latencies.append(time.perf_counter() - t)

        await asyncio.gather(*(client() for _ in range(args.clients)))

    await clients(args.warmup, [], [])
    await wait_quiet(worker.pid, timeout=60)
    counter = iter(range(10**9))
    latencies: list[float] = []
    errors: list[str] = []
    meter = CpuMeter(stack, worker, {"api": server.pid})
    spy = None
    if args.profile and name.startswith(("POST", "GET")):
        slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:60]
        out = Path(args.profile) / f"api-{slug}.txt"
        spy = PySpy(server.pid, out, gil=args.profile_gil).start()
    load_before = load()
    meter.start()
    await clients(args.requests, latencies, errors)
    meter.stop()
    if spy is not None:
        print("\n".join([f"py-spy, API server, {name}:", *top_frames(spy.stop())]))
    result = {
        "name": name,
        "rps": len(latencies) / meter.wall,
        "requests": len(latencies),
        "seconds": meter.wall,
        "p50": percentile(latencies, 50) * 1000 if latencies else 0.0,
        "p95": percentile(latencies, 95) * 1000 if latencies else 0.0,
        "p99": percentile(latencies, 99) * 1000 if latencies else 0.0,
        "errors": errors,
        "load": f"{load_before} → {load()}",
        "cpu": meter.summary(),
    }
    log(f"{name}: {result['rps']:.1f}/s p50 {result['p50']:.1f} ms p99 {result['p99']:.1f} ms")
    if errors:
        log(f"  {len(errors)} errors, first: {errors[0]}")
    return result


async def measure(
    args: argparse.Namespace, stack: Stack, worker: WorkerProcess, server: ApiServer
) -> int:
    client: Client = await connect_temporal(stack.settings)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    connector = aiohttp.TCPConnector(limit=args.clients + 4)
    async with aiohttp.ClientSession(server.url, headers=headers, connector=connector) as http:

        async def post(path: str, body: dict[str, Any], status: int = 200) -> Any:
            async with http.post(path, json=body) as reply:
                payload = await reply.json()
                if reply.status != status:
                    raise RuntimeError(f"{path}: {reply.status} {payload}")
                return payload

        async def get(path: str) -> Any:
            async with http.get(path) as reply:
                payload = await reply.json()
                if reply.status != 200:
                    raise RuntimeError(f"{path}: {reply.status} {payload}")
                return payload

        features = ["posts", "archive"]
        base = {"currency": "usd", "interval": "month", "features": features}
        trial = await post(
            "/v1/plans", {"name": "Trial", "amount": 1000, "trial_days": 14, **base}, 201
        )
        basic = await post("/v1/plans", {"name": "Basic", "amount": 1000, **base}, 201)
        pro = await post("/v1/plans", {"name": "Pro", "amount": 2500, **base}, 201)
        log(f"setup: {args.customers} customers, {args.active} active subscriptions")
        gate = asyncio.Semaphore(args.clients)

        async def customer(i: int) -> str:
            async with gate:
                body = {"email": f"lat-{i}@example.com", "payment_method": "pm_card_visa"}
                return str((await post("/v1/customers", body, 201))["id"])

        customers = list(await asyncio.gather(*(customer(i) for i in range(args.customers))))

        async def active(i: int) -> str:
            async with gate:
                body = {"customer_id": customers[i % len(customers)], "plan_id": basic["id"]}
                sub = await post("/v1/subscriptions", body, 201)
                assert sub["status"] == "active", sub
                return str(sub["id"])

        actives = list(await asyncio.gather(*(active(i) for i in range(args.active))))
        created: list[str] = []

        async def bare_start(i: int) -> None:
            await client.start_workflow(
                TrivialWorkflow.run, id=f"trivial/{uuid.uuid4().hex}", task_queue=BARE_TASK_QUEUE
            )

        async def bare_update_with_start(i: int) -> None:
            start = WithStartWorkflowOperation(
                TrivialWorkflow.run,
                id=f"trivial-uws/{uuid.uuid4().hex}",
                task_queue=BARE_TASK_QUEUE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            )
            await client.execute_update_with_start_workflow(
                TrivialWorkflow.first, start_workflow_operation=start
            )

        async def create(i: int) -> None:
            body = {
                "customer_id": customers[i % len(customers)],
                "plan_id": trial["id"],
                "trial_days": 14,
            }
            sub = await post("/v1/subscriptions", body, 201)
            if sub["status"] != "trialing":
                raise RuntimeError(f"unexpected status {sub['status']}")
            created.append(sub["id"])

        async def preview(i: int) -> None:
            sub_id = actives[i % len(actives)]
            body = {"plan_id": pro["id"], "preview": True}
            out = await post(f"/v1/subscriptions/{sub_id}/change_plan", body)
            if out.get("invoice_preview") is None:
                raise RuntimeError(f"no invoice preview: {out}")

        async def read(i: int) -> None:
            await get(f"/v1/subscriptions/{random.choice(created or actives)}")

        phases: list[tuple[str, Call]] = [
            (f"{BARE_START}, before", bare_start),
            (CREATE, create),
            (f"{BARE_START}, after", bare_start),
            ("bare `execute_update_with_start` (trivial workflow)", bare_update_with_start),
            ("POST /v1/subscriptions/{id}/change_plan (preview)", preview),
            ("GET /v1/subscriptions/{id}", read),
        ]
        results = [await phase(n, c, args, stack, worker, server) for n, c in phases]

    report(args, results)
    return 1 if any(r["errors"] for r in results) else 0


BARE_START = "bare `client.start_workflow` (trivial workflow)"
CREATE = "POST /v1/subscriptions (14-day trial)"


def bare_rate(results: list[dict[str, Any]]) -> float:
    """The baseline: the bare start rows' requests over the time of both."""
    rows = [r for r in results if r["name"].startswith(BARE_START)]
    return float(sum(r["requests"] for r in rows) / sum(r["seconds"] for r in rows))


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    bare = bare_rate(results)
    settings = Settings()  # what the worker and API processes read from the same environment
    data = [
        [
            r["name"],
            f"{r['rps']:.1f}",
            f"{r['p50']:.1f}",
            f"{r['p95']:.1f}",
            f"{r['p99']:.1f}",
            len(r["errors"]),
            f"{r['rps'] / bare:.2f}",
            r["load"],
        ]
        for r in results
    ]
    create = next(r for r in results if r["name"] == CREATE)
    body = [
        f"{args.clients} concurrent clients, {args.requests} requests per row after "
        f"{args.warmup} warm-up requests; API: uvicorn, one process, as `recur api`; worker "
        f"tuning: {' '.join(args.tune) or 'as in worker.py'}; sandbox (both workers): "
        f"{args.sandbox} (RECUR_WORKFLOW_SANDBOX={str(settings.workflow_sandbox).lower()}); "
        f"event loop {settings.event_loop}; "
        f"log level {args.log_level}"
        f"{'; no cached bytecode' if args.no_bytecode else ''}.",
        "",
        *table(
            [
                "request",
                "req/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "errors",
                "÷ bare start",
                "load avg",
            ],
            data,
        ),
        "",
        f"- **POST /v1/subscriptions / bare start_workflow: {create['rps'] / bare:.2f}** "
        f"(target ≥ 0.5; the baseline, {bare:.1f} req/s, is both bare start rows, the one "
        "before the create row and the one after it)",
    ]
    body += [f"- CPU seconds, {r['name']}: {r['cpu']}" for r in results]
    text = append_results("Lifecycle API latency", body, record=not args.no_record)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=1000, help="per row")
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--active", type=int, default=100, help="subscriptions for previews")
    parser.add_argument("--tune", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--sandbox", default="default", help="see bench.worker_proc --help")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="worker and API run with PYTHONDONTWRITEBYTECODE=1 (recompile on every import)",
    )
    parser.add_argument("--profile", metavar="DIR", help="py-spy the API server into DIR")
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (py-spy --gil)",
    )
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    # The driver (the bare rows' Temporal client, and the HTTP clients of Recur's rows) runs
    # on the event loop Recur's processes run on (RECUR_EVENT_LOOP), for both sides alike.
    raise SystemExit(run_loop(run(parser.parse_args()), Settings()))


if __name__ == "__main__":
    main()
