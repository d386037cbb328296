"""What one subscription costs: Temporal history, worker memory, PostgreSQL storage.

    .venv/bin/python -m bench.subscription_cost              # 100 sub-years, 10,000 live
    .venv/bin/python -m bench.subscription_cost --live 1000  # quicker RSS figure

Starts its own stack on free loopback ports and a worker process (`bench.worker_proc`).

1. **A year of renewals.** `--years-of` monthly subscriptions (default 100) on one test
   clock are created and the clock is advanced one month at a time, twelve times. Before
   and after, every table's row count and `pg_total_relation_size`: rows and bytes per
   subscription-year (creation plus twelve renewals). The histories of every run of a few
   subscriptions (`--sample`) are fetched: events per renewal period (each `advance_clock`
   update starts one: from the workflow task that delivered it to the next one), per run
   and per year.
2. **Worker memory.** The worker is restarted (empty caches) and `--live` subscriptions
   (default 10,000) are created on a second test clock; the worker's RSS is sampled
   throughout (peak) and once they are all live and the worker idles. `--renew-live`
   then advances all of them one period (a 10,000-renewal storm) and samples again.

Prints the figures and appends them to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.common import (
    RssSampler,
    Stack,
    WorkerProcess,
    append_results,
    audit_problems,
    bounded,
    charge_audit,
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
    wait_quiet,
)
from bench.renewal_storm import month_after
from db.engine import get_engine
from worker import connect_temporal
from workflows.messages import workflow_id_for

T0 = datetime(2027, 1, 1, tzinfo=UTC)


async def run(args: argparse.Namespace) -> int:
    quiet_driver_logs()
    deadline = time.monotonic() + args.timeout
    stack = start_stack(args.log_level, bytecode=not args.no_bytecode)
    worker: WorkerProcess | None = None
    try:
        worker = WorkerProcess(stack, args.tune, sandbox=args.sandbox).start()
        return await asyncio.wait_for(measure(args, stack, worker), deadline - time.monotonic())
    finally:
        if worker is not None:
            worker.stop()
        remove_stack(stack, args.keep)


async def table_sizes(engine: Any) -> dict[str, tuple[int, int]]:
    """Table -> (rows, bytes incl. indexes and TOAST)."""
    tables = await rows(
        engine,
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'alembic_version'",
    )
    out: dict[str, tuple[int, int]] = {}
    for name, size in tables:
        count = await scalar(engine, f'SELECT count(*) FROM "{name}"')
        out[name] = (int(count or 0), int(size))
    return out


def period_sizes(events: list[Any]) -> list[int]:
    """Events of each renewal period in one run: from the workflow task that delivered an
    `advance_clock` update up to the next such task (or the end of the run)."""
    starts = []
    for i, e in enumerate(events):
        accepted = e.workflow_execution_update_accepted_event_attributes
        if (
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
            and accepted.accepted_request.input.name == "advance_clock"
        ):
            j = i
            while j > 0 and events[j].event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
                j -= 1
            starts.append(j)
    if not starts:
        return []
    return [b - a for a, b in zip(starts, [*starts[1:], len(events)], strict=True)]


async def histories(client: Client, workflow_id: str) -> list[dict[str, Any]]:
    """Every run of one workflow id, oldest first: event count, bytes, event types."""
    runs = [wf async for wf in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    runs.sort(key=lambda wf: wf.start_time)
    out = []
    for wf in runs:
        history = await client.get_workflow_handle(workflow_id, run_id=wf.run_id).fetch_history()
        events = history.events
        out.append(
            {
                "run_id": wf.run_id,
                "status": wf.status.name if wf.status else "?",
                "events": len(events),
                "bytes": sum(e.ByteSize() for e in events),
                "types": Counter(EventType.Name(e.event_type) for e in events),
                "periods": period_sizes(list(events)),
                "continued": bool(events)
                and events[-1].event_type
                == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
            }
        )
    return out


async def wait_receipts(engine: Any, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    sent = 0
    while time.monotonic() < deadline:
        sent = int(
            await scalar(
                engine,
                "SELECT count(*) FROM email_notifications WHERE template = 'renewal_receipt'",
            )
            or 0
        )
        if sent >= expected:
            break
        await asyncio.sleep(0.5)
    return sent


async def measure(args: argparse.Namespace, stack: Stack, worker: WorkerProcess) -> int:
    settings = stack.settings
    client = await connect_temporal(settings)
    engine = get_engine(settings.effective_database_url)
    body: list[str] = []
    problems = 0
    async with inprocess_api(settings, client) as api:
        plan = await create_plan(api)

        async def subscribe_all(customers: list[str], clock_id: str, concurrency: int) -> list[str]:
            async def one(customer_id: str) -> str:
                req = {"customer_id": customer_id, "plan_id": plan["id"], "test_clock_id": clock_id}
                return str(ok(await api.post("/v1/subscriptions", json=req), 201)["id"])

            return await bounded(concurrency, customers, one)

        # ------------------------------------------------------------ a year of renewals
        if args.years_of:
            s = args.years_of
            clock = ok(await api.post("/v1/test_clocks", json={"frozen_time": T0.isoformat()}), 201)
            before = await table_sizes(engine)
            customers = await create_customers(api, s, args.create_concurrency)
            subs = await subscribe_all(customers, clock["id"], args.create_concurrency)
            created = await table_sizes(engine)
            log(f"{s} subscriptions created; advancing twelve months")
            t = time.perf_counter()
            for month in range(1, 13):
                to = month_after(T0, month)
                ok(
                    await api.post(
                        f"/v1/test_clocks/{clock['id']}/advance",
                        json={"frozen_time": to.isoformat()},
                    )
                )
            year_s = time.perf_counter() - t
            receipts = await wait_receipts(engine, 12 * s, args.receipt_timeout)
            await wait_quiet(worker.pid)
            after = await table_sizes(engine)
            paid = await scalar(engine, "SELECT count(*) FROM invoices WHERE status = 'paid'")
            body += year_section(s, before, created, after, int(paid or 0), receipts, year_s)

            sample = subs[: args.sample]
            sub_runs = [await histories(client, workflow_id_for(x)) for x in sample]
            body += history_section(sub_runs)

            audit = await charge_audit(
                engine, settings.effective_stripe_api_base or "", settings.stripe_api_key
            )
            problems += audit_problems(audit)
            body.append("- charge audit: " + ", ".join(f"{k} {v}" for k, v in audit.items()))

        # ------------------------------------------------------------ worker memory
        if args.live:
            n = args.live
            log("restarting the worker (empty caches) for the memory figure")
            worker.stop()
            await asyncio.sleep(12)
            worker.start()
            await wait_quiet(worker.pid)
            idle_mb = worker.rss_mb()
            clock = ok(await api.post("/v1/test_clocks", json={"frozen_time": T0.isoformat()}), 201)
            customers = await create_customers(api, n, args.create_concurrency)
            sampler = RssSampler(worker.pid).start()
            t = time.perf_counter()
            subs = await subscribe_all(customers, clock["id"], args.create_concurrency)
            create_s = time.perf_counter() - t
            peak_create = await sampler.stop()
            await wait_quiet(worker.pid)
            await asyncio.sleep(2)
            live_mb = worker.rss_mb()
            running = await client.count_workflows(
                f"TestClockId = '{clock['id']}' AND ExecutionStatus = 'Running'"
            )
            log(f"{running.count} live; worker RSS {live_mb:.0f} MB (peak {peak_create:.0f})")
            data = [
                ["worker idle, fresh process", f"{idle_mb:.0f} MB", load()],
                [
                    f"creating {n} ({n / create_s:.1f}/s): peak",
                    f"{peak_create:.0f} MB",
                    "",
                ],
                [
                    f"{running.count} live subscriptions, worker idle",
                    f"**{live_mb:.0f} MB**",
                    load(),
                ],
            ]
            if args.renew_live:
                sampler = RssSampler(worker.pid).start()
                t = time.perf_counter()
                to = month_after(T0, 1).isoformat()
                ok(
                    await api.post(
                        f"/v1/test_clocks/{clock['id']}/advance", json={"frozen_time": to}
                    )
                )
                renew_s = time.perf_counter() - t
                peak_renew = await sampler.stop()
                await wait_quiet(worker.pid)
                data.append(
                    [
                        f"renewing all {n} ({n / renew_s:.1f}/s): peak",
                        f"{peak_renew:.0f} MB",
                        load(),
                    ]
                )
                data.append(["after the renewals, worker idle", f"{worker.rss_mb():.0f} MB", ""])
            body += [
                "",
                f"Worker RSS (`bench.worker_proc`, its own process; sandbox {args.sandbox}; "
                f"tuning {' '.join(args.tune) or 'as in worker.py'}):",
                "",
                *table(["state", "RSS", "load avg"], data),
            ]
    await engine.dispose()
    body.append(f"- **failed or duplicated charges: {problems}**")
    text = append_results("Cost of a subscription", body, record=not args.no_record)
    print(text)
    return 1 if problems else 0


def year_section(
    s: int,
    before: dict[str, tuple[int, int]],
    created: dict[str, tuple[int, int]],
    after: dict[str, tuple[int, int]],
    paid: int,
    receipts: int,
    year_s: float,
) -> list[str]:
    data = []
    total = [0.0, 0.0, 0.0, 0.0]
    for name in sorted(after, key=lambda k: -(after[k][1] - before.get(k, (0, 0))[1])):
        b, c, a = before.get(name, (0, 0)), created.get(name, (0, 0)), after[name]
        d_rows_c, d_bytes_c = (c[0] - b[0]) / s, (c[1] - b[1]) / s
        d_rows_y, d_bytes_y = (a[0] - b[0]) / s, (a[1] - b[1]) / s
        if not any((d_rows_c, d_bytes_c, d_rows_y, d_bytes_y)):
            continue
        total = [
            total[0] + d_rows_c,
            total[1] + d_bytes_c,
            total[2] + d_rows_y,
            total[3] + d_bytes_y,
        ]
        data.append(
            [name, f"{d_rows_c:.1f}", f"{d_bytes_c:,.0f}", f"{d_rows_y:.1f}", f"{d_bytes_y:,.0f}"]
        )
    data.append(
        [
            "**total**",
            f"{total[0]:.1f}",
            f"{total[1]:,.0f}",
            f"**{total[2]:.1f}**",
            f"**{total[3]:,.0f}**",
        ]
    )
    return [
        f"{s} monthly subscriptions, created and advanced twelve months on a test clock "
        f"({12 * s / year_s:.1f} renewals/s over the twelve advances; {paid} paid invoices, "
        f"{receipts} renewal receipts). PostgreSQL per subscription (table + indexes + TOAST, "
        "no VACUUM FULL):",
        "",
        *table(
            [
                "table",
                "rows at creation",
                "bytes at creation",
                "rows per sub-year",
                "bytes per sub-year",
            ],
            data,
        ),
        "",
    ]


def history_section(sub_runs: list[list[dict[str, Any]]]) -> list[str]:
    # A run holds the creation and up to PERIODS_PER_RUN renewals; a renewal period is
    # what one month's advance adds to a run (the last one of a run ends in its
    # continue-as-new). The last run is open, waiting for the next period.
    periods = [n for runs in sub_runs for r in runs for n in r["periods"]]
    per_run = [r["events"] for runs in sub_runs for r in runs]
    per_year = [sum(r["events"] for r in runs) for runs in sub_runs]
    bytes_year = [sum(r["bytes"] for r in runs) for runs in sub_runs]
    n_runs = [len(runs) for runs in sub_runs]
    first = [runs[0] for runs in sub_runs if runs]
    opening = [r["events"] - sum(r["periods"]) for r in first]
    out = [
        f"Temporal history, {len(sub_runs)} sampled subscriptions (every run fetched):",
        "",
        *table(
            ["what", "events", "bytes"],
            [
                [
                    "plain renewal period (what one month's advance adds), median",
                    f"**{statistics.median(periods):.0f}** (min {min(periods)}, max {max(periods)})"
                    if periods
                    else "-",
                    "",
                ],
                [
                    "creation (before the first advance), median",
                    f"{statistics.median(opening):.0f}" if opening else "-",
                    "",
                ],
                [
                    "one run, largest",
                    f"{max(per_run)}" if per_run else "-",
                    "",
                ],
                [
                    f"one year (creation + 12 renewals, {statistics.median(n_runs):.0f} runs)",
                    f"{statistics.median(per_year):.0f}",
                    f"{statistics.median(bytes_year):,.0f}",
                ],
            ],
        ),
        "",
        "- each period holds the accepted and completed events of its test-clock "
        "`advance_clock` update; on a real clock a timer's started and fired events "
        "replace them.",
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--years-of", type=int, default=100, help="subscriptions advanced a year")
    parser.add_argument(
        "--sample", type=int, default=5, help="subscriptions whose runs are fetched"
    )
    parser.add_argument("--live", type=int, default=10_000, help="live subscriptions for RSS")
    parser.add_argument("--renew-live", action="store_true", help="then renew all of them once")
    parser.add_argument("--create-concurrency", type=int, default=32)
    parser.add_argument("--tune", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--sandbox", default="default", help="see bench.worker_proc --help")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="worker and API run with PYTHONDONTWRITEBYTECODE=1 (recompile on every import)",
    )
    parser.add_argument("--receipt-timeout", type=float, default=300.0)
    parser.add_argument("--timeout", type=float, default=5400.0, help="whole run, seconds")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
