"""Renewal storm: N subscriptions on one test clock, all due at the same instant.

    .venv/bin/python -m bench.renewal_storm --n 1000

Starts its own stack on free loopback ports (PostgreSQL, Temporal dev server, localstripe,
SMTP sink) and one worker process (`bench.worker_proc`: Recur's worker plus the bare
baseline worker on its own task queue, with Recur's worker settings: the same workflow
runner, sticky cache and event loop). Creates N customers (`pm_card_visa`) and N monthly
subscriptions on one test clock through the API app in-process, and 2N bare workflows.
Three phases run, one after the other, each in a freshly restarted worker process so that
each starts cold (nothing in the sticky cache, as a month after the subscriptions were
created):

* bare, first set: one `tick` update per bare workflow (one no-op activity each), at the
  advance endpoint's concurrency (`api.clock_advances.advance_all`, 64 in flight);
* Recur: `POST /v1/test_clocks/{id}/advance` by one month; it answers once every
  subscription has renewed, been charged and been projected;
* bare, second set: the same over N other bare workflows, as cold as the first.

The bare rate is that of both sets (2N ticks over the time of both), so a machine that
speeds up or slows down during the run moves the baseline as it moved Recur: this VM's
speed drifts by a third within minutes, and one bare phase before Recur's made the ratio
of one run swing by a few tenths.

Then it checks the database (exactly two paid invoices per subscription, no failed or
duplicated attempt) and localstripe (one succeeded PaymentIntent per paid invoice), waits
for the renewal receipts the outbox dispatcher sends, prints the figures and appends them to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api import clock_advances
from bench.baseline import BARE_TASK_QUEUE, BareRenewalWorkflow
from bench.common import (
    CpuMeter,
    PySpy,
    RssSampler,
    Stack,
    WorkerProcess,
    append_results,
    audit_problems,
    bounded,
    charge_audit,
    cpu_ms_per_item,
    create_customers,
    create_plan,
    inprocess_api,
    load,
    log,
    ok,
    quiet_driver_logs,
    remove_stack,
    rows,
    scalar,
    start_stack,
    table,
    top_frames,
    wait_stack_quiet,
)
from bench.timeline import renewal_timeline
from config import Settings, run_loop
from db.engine import get_engine
from worker import connect_temporal
from workflows.messages import workflow_id_for

T0 = datetime(2027, 1, 1, tzinfo=UTC)
BARE_SETS = ("before", "after")  # ticked before and after Recur's phase
ADVANCE_CONCURRENCY = int(
    inspect.signature(clock_advances.advance_all).parameters["concurrency"].default
)


def month_after(t: datetime, months: int) -> datetime:
    month = t.month - 1 + months
    return t.replace(year=t.year + month // 12, month=month % 12 + 1)


def warm_cache_room(n: int) -> None:
    """With `--warm` one worker process keeps both bare sets (2n workflows) and Recur's n
    subscriptions: a sticky cache of at least 2n for both workers (one setting, read by
    `worker.worker_options`), so that neither side evicts its own workflows."""
    size = max(Settings().worker_max_cached_workflows, 2 * n)
    os.environ["RECUR_WORKER_MAX_CACHED_WORKFLOWS"] = str(size)
    log(f"--warm: sticky cache of {size} workflows for both workers")


async def run(args: argparse.Namespace) -> int:
    quiet_driver_logs()
    deadline = time.monotonic() + args.timeout
    if args.warm:
        warm_cache_room(args.n)
    stack = start_stack(args.log_level, bytecode=not args.no_bytecode)
    worker: WorkerProcess | None = None
    try:
        worker = WorkerProcess(
            stack, args.tune, sandbox=args.sandbox, processes=args.workers
        ).start()
        return await asyncio.wait_for(storm(args, stack, worker), deadline - time.monotonic())
    finally:
        if worker is not None:
            worker.stop()
        remove_stack(stack, args.keep)


async def storm(args: argparse.Namespace, stack: Stack, worker: WorkerProcess) -> int:
    n, settings = args.n, stack.settings
    client = await connect_temporal(settings)
    engine = get_engine(settings.effective_database_url)
    results: dict[str, Any] = {}
    async with inprocess_api(settings, client) as api:
        plan = await create_plan(api)
        clock = ok(await api.post("/v1/test_clocks", json={"frozen_time": T0.isoformat()}), 201)

        log(f"creating {n} customers and subscriptions (concurrency {args.create_concurrency})")
        t = time.perf_counter()
        customers = await create_customers(api, n, args.create_concurrency)
        customers_s = time.perf_counter() - t

        async def subscribe(customer_id: str) -> str:
            body = {"customer_id": customer_id, "plan_id": plan["id"], "test_clock_id": clock["id"]}
            sub = ok(await api.post("/v1/subscriptions", json=body), 201)
            assert sub["status"] == "active", sub
            return str(sub["id"])

        t = time.perf_counter()
        await bounded(args.create_concurrency, customers, subscribe)
        subs_s = time.perf_counter() - t
        results["create"] = (n / customers_s, n / subs_s)
        log(f"customers {n / customers_s:.1f}/s, subscriptions {n / subs_s:.1f}/s")

        # Two sets of bare workflows: one ticked before Recur's phase, one after it.
        bare_sets = {s: [f"bare/{s}/{i}" for i in range(n)] for s in BARE_SETS}

        async def start_bare(workflow_id: str) -> None:
            await client.start_workflow(
                BareRenewalWorkflow.run, id=workflow_id, task_queue=BARE_TASK_QUEUE
            )

        await bounded(ADVANCE_CONCURRENCY, [*bare_sets["before"], *bare_sets["after"]], start_bare)

        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            round_: dict[str, Any] = {}
            for phase in ("before", "recur", "after"):
                if not args.warm:
                    await restart_cold(stack, worker)
                waited, busy = await wait_stack_quiet(stack, worker)
                log(f"{phase}: stack quiet after {waited:.1f} s ({busy:.2f} cores busy)")
                meter = CpuMeter(stack, worker, {})
                rss = RssSampler(worker.pids).start()
                load_before = load()
                spy = None
                if args.profile:
                    out = Path(args.profile) / f"storm-{phase}-round{r + 1}.txt"
                    spy = PySpy(worker.pid, out, gil=args.profile_gil).start()
                meter.start()
                if phase in BARE_SETS:

                    async def tick(workflow_id: str) -> None:
                        await client.get_workflow_handle(workflow_id).execute_update(
                            BareRenewalWorkflow.tick
                        )

                    await bounded(ADVANCE_CONCURRENCY, bare_sets[phase], tick)
                else:
                    to = month_after(T0, r + 1)
                    ok(
                        await api.post(
                            f"/v1/test_clocks/{clock['id']}/advance",
                            json={"frozen_time": to.isoformat()},
                        )
                    )
                meter.stop()
                peak = await rss.stop()
                if spy is not None:
                    print("\n".join([f"py-spy, worker, {phase}:", *top_frames(spy.stop())]))
                round_[phase] = {
                    "seconds": meter.wall,
                    "rate": n / meter.wall,
                    "load": f"{load_before} → {load()}",
                    "cpu": meter.summary(),
                    "cpu_s": dict(meter.seconds),
                    "rss": peak,
                }
                log(f"round {r + 1} {phase}: {n / meter.wall:.1f}/s ({meter.summary()})")
                if phase == "recur":
                    t = time.perf_counter()
                    sent = await wait_for_receipts(
                        engine, n * (r + 1), timeout=args.receipt_timeout
                    )
                    round_["receipts"] = (sent, time.perf_counter() - t + meter.wall)
            round_["bare"] = both_bare_sets(round_["before"], round_["after"], n)
            rounds.append(round_)

    expected = args.rounds + 1
    wrong = await scalar(
        engine,
        "SELECT count(*) FROM (SELECT s.id, count(i.id) FILTER (WHERE i.status = 'paid') AS paid"
        " FROM subscriptions s LEFT JOIN invoices i ON i.subscription_id = s.id"
        " GROUP BY s.id) t WHERE paid <> :expected",
        expected=expected,
    )
    statuses = dict(await rows(engine, "SELECT status, count(*) FROM subscriptions GROUP BY 1"))
    renewed = await scalar(
        engine, "SELECT count(*) FROM events WHERE type = 'subscription.renewed'"
    )
    sample = [r[0] for r in await rows(engine, "SELECT id FROM subscriptions ORDER BY id LIMIT 50")]
    timeline = await renewal_timeline(client, [workflow_id_for(x) for x in sample])
    audit = await charge_audit(
        engine, settings.effective_stripe_api_base or "", settings.stripe_api_key
    )
    problems = audit_problems(audit) + int(wrong or 0)
    await engine.dispose()

    report(args, results, rounds, statuses, wrong, renewed, audit, problems, timeline)
    return 1 if problems else 0


async def restart_cold(stack: Stack, worker: WorkerProcess) -> None:
    """A new worker process before each phase: every side starts with an empty sticky
    cache, as a month after the subscriptions were created, and the second bare set does
    not evict the first one's workflows from a full cache."""
    # Only once the old process has nothing left to do: stopped with the bare workflows'
    # first tasks in flight, their histories would carry task timeouts and retries.
    await wait_stack_quiet(stack, worker)
    log("restarting the worker (cold sticky cache)")
    worker.stop()
    # Wait out the old process's sticky queue, so the server sends the next tasks to the
    # normal queue at once.
    await asyncio.sleep(12)
    worker.start()


def both_bare_sets(before: dict[str, Any], after: dict[str, Any], n: int) -> dict[str, Any]:
    """The baseline of a round: both bare sets' 2n ticks over the time of both."""
    seconds = before["seconds"] + after["seconds"]
    cpu = {k: before["cpu_s"].get(k, 0.0) + after["cpu_s"].get(k, 0.0) for k in before["cpu_s"]}
    return {
        "seconds": seconds,
        "rate": 2 * n / seconds,
        "load": f"{before['load']}; after: {after['load']}",
        "cpu_s": cpu,
        "cpu": f"before {before['cpu']}; after {after['cpu']}",
        "rss": max(before["rss"], after["rss"]),
        "sets": (before["rate"], after["rate"]),
    }


async def wait_for_receipts(engine: Any, expected: int, timeout: float) -> int:
    """Renewal receipts (emails) recorded as sent; waits until `expected` or the timeout."""
    deadline = time.monotonic() + timeout
    sent = 0
    while time.monotonic() < deadline:
        sent = int(
            await scalar(
                engine,
                "SELECT count(*) FROM email_notifications"
                " WHERE template = 'renewal_receipt' AND status = 'sent'",
            )
            or 0
        )
        if sent >= expected:
            break
        await asyncio.sleep(0.5)
    return sent


def report(
    args: argparse.Namespace,
    results: dict[str, Any],
    rounds: list[dict[str, Any]],
    statuses: dict[str, int],
    wrong: int,
    renewed: int,
    audit: dict[str, int],
    problems: int,
    timeline: list[str],
) -> None:
    n = args.n
    settings = Settings()  # what the worker process read from the same environment
    data: list[list[Any]] = []
    cpu: list[list[Any]] = []
    for i, rd in enumerate(rounds, 1):
        recur, bare = rd["recur"], rd["bare"]
        sent, with_receipts = rd.get("receipts", (0, 0.0))
        before, after = bare["sets"]
        data.append(
            [
                i,
                f"{recur['rate']:.1f} ({recur['seconds']:.1f} s)",
                f"{bare['rate']:.1f} ({before:.1f} before, {after:.1f} after)",
                f"**{recur['rate'] / bare['rate']:.2f}**",
                f"{sent} in {with_receipts:.1f} s",
                f"{recur['load']} / {bare['load']}",
                f"{recur['rss']:.0f} MB",
            ]
        )
        ms = {
            side: [
                cpu_ms_per_item(phase["cpu_s"], items, names)
                for names in (None, ["worker"], ["temporal"])
            ]
            for side, phase, items in (("recur", recur, n), ("bare", bare, 2 * n))
        }
        cpu.append(
            [
                i,
                f"{ms['recur'][0]:.1f} / {ms['bare'][0]:.1f}",
                f"**{ms['bare'][0] / ms['recur'][0]:.2f}**",
                f"{ms['recur'][1]:.1f} / {ms['bare'][1]:.1f}",
                f"{ms['recur'][2]:.1f} / {ms['bare'][2]:.1f}",
            ]
        )
    body = [
        f"N = {n} subscriptions on one test clock, advanced one month per round; "
        f"{ADVANCE_CONCURRENCY} renewals in flight (the advance endpoint's concurrency) for both "
        f"sides; {'warm' if args.warm else 'cold'} sticky cache; "
        f"{args.workers} worker process{'es' if args.workers > 1 else ''}; worker tuning: "
        f"{' '.join(args.tune) or 'as in worker.py'}; sandbox (both workers): {args.sandbox} "
        f"(RECUR_WORKFLOW_SANDBOX={str(settings.workflow_sandbox).lower()}); event loop "
        f"{settings.event_loop}; sticky cache {settings.worker_max_cached_workflows}; "
        f"log level {args.log_level}"
        f"{'; no cached bytecode' if args.no_bytecode else ''}.",
        "",
        *table(
            [
                "round",
                "Recur renewals/s",
                "bare renewals/s (both sets; each set)",
                "Recur / bare",
                "receipts sent",
                "load avg (Recur / bare before; after)",
                "worker peak RSS",
            ],
            data,
        ),
        "",
        "CPU per renewal, all stack processes (wall-clock rates move with the machine's load; "
        "CPU per renewal much less):",
        "",
        *table(
            [
                "round",
                "stack CPU ms/renewal, Recur / bare",
                "bare ÷ Recur (CPU)",
                "worker ms, Recur / bare",
                "Temporal server ms, Recur / bare",
            ],
            cpu,
        ),
        "",
        f"- setup: customers {results['create'][0]:.1f}/s, subscriptions (first charge) "
        f"{results['create'][1]:.1f}/s",
    ]
    for i, rd in enumerate(rounds, 1):
        body.append(f"- round {i} CPU seconds, Recur: {rd['recur']['cpu']}")
        body.append(f"- round {i} CPU seconds, bare: {rd['bare']['cpu']}")
    body += [
        f"- subscriptions by status: {statuses}; `subscription.renewed` events: {renewed}",
        f"- subscriptions without exactly {args.rounds + 1} paid invoices: {wrong}",
        "- where a renewal's time goes (last round, from the histories; "
        + "; ".join(timeline)
        + ")",
        "- charge audit: " + ", ".join(f"{k} {v}" for k, v in audit.items()),
        f"- **failed or duplicated charges: {problems}**",
    ]
    text = append_results(f"Renewal storm, N = {n}", body, record=not args.no_record)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="subscriptions (default 1000)")
    parser.add_argument("--rounds", type=int, default=1, help="periods to advance, one per round")
    parser.add_argument("--create-concurrency", type=int, default=32)
    parser.add_argument("--warm", action="store_true", help="keep the worker (warm cache)")
    parser.add_argument("--tune", action="append", default=[], metavar="NAME=VALUE",
                        help="extra temporalio Worker kwargs for Recur's worker")  # fmt: skip
    parser.add_argument("--sandbox", default="default", help="see bench.worker_proc --help")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes on the task queues (default 1)"
    )
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="worker and API run with PYTHONDONTWRITEBYTECODE=1 (recompile on every import)",
    )
    parser.add_argument("--receipt-timeout", type=float, default=300.0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="whole run, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the worker into DIR per phase")
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (py-spy --gil)",
    )
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    # The driver (the in-process API sending Recur's updates, and the bare ticks) runs on
    # the event loop Recur's processes run on (RECUR_EVENT_LOOP), for both sides alike.
    raise SystemExit(run_loop(run(args), Settings()))


if __name__ == "__main__":
    main()
