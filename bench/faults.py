"""Fault injection at scale: issue #17's scenarios (tests/faults) with larger N, repeated.

    .venv/bin/python -m bench.faults                          # every scenario, N = 200, once
    .venv/bin/python -m bench.faults --n 200 --repeats 3 --scenarios storm_worker_kill

Starts the fault stack of `tests.faults.harness` (PostgreSQL, Temporal dev server on a
SQLite file, localstripe, SMTP sink, Recur's worker and API, each a process of its own;
the worker reaches Stripe through the fault proxy), runs each scenario of
`tests.faults.catalog.SCENARIOS` `--repeats` times with `--n` subscriptions (upgrades
and support retries: `--n-updates`), prints each run's report (the audit's problems
name the subscription, its invoices, attempt rows, PaymentIntents and workflow) and a
summary, and appends the summary to bench/RESULTS.md. Exit status 1 when a run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import append_results, log, table
from tests.faults.catalog import SCENARIOS
from tests.faults.harness import FaultStack, start_fault_stack
from tests.faults.scenarios import Backend, Journal, Report

UPDATE_SCENARIOS = {"upgrade_worker_kill", "retry_payment_worker_kill"}
KILLS_WORKER = {"storm_worker_kill", "usage_storm_worker_kill", *UPDATE_SCENARIOS}


async def run(args: argparse.Namespace) -> int:
    base = Path(tempfile.mkdtemp(prefix="recur-faults-"))
    log(f"fault stack under {base}")
    stack = await start_fault_stack(base)
    stop = asyncio.Event()
    supervisor = asyncio.create_task(stack.supervise(stop))
    reports: list[Report] = []
    try:
        await asyncio.wait_for(_scenarios(args, stack, reports), args.timeout)
    except TimeoutError:
        log(f"stopped after --timeout {args.timeout:.0f} s")
    finally:
        stop.set()
        await asyncio.gather(supervisor, return_exceptions=True)
        await asyncio.to_thread(stack.stop)
        await stack.proxy.close()
        if args.keep:
            log(f"kept {base} (every process's log)")
        else:
            shutil.rmtree(base, ignore_errors=True)
    summary = _summary(reports)
    print(summary)
    if args.record and reports:
        append_results("Fault injection (bench/faults.py)", summary.splitlines())
    return 0 if reports and all(r.ok for r in reports) else 1


async def _scenarios(args: argparse.Namespace, stack: FaultStack, reports: list[Report]) -> None:
    names = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    for repeat in range(args.repeats):
        for name in names:
            n = args.n_updates if name in UPDATE_SCENARIOS else args.n
            log(f"{name} n={n} run {repeat + 1}/{args.repeats}")
            started = time.monotonic()
            extra = {"kills": args.kills} if args.kills and name in KILLS_WORKER else {}
            async with stack.api_client(timeout=300) as http:
                report = await SCENARIOS[name](stack, Backend(http, Journal()), n, **extra)
            reports.append(report)
            print(report.text(limit=args.show), flush=True)
            log(f"{name}: {'ok' if report.ok else 'FAILED'} in {time.monotonic() - started:.0f} s")


def _summary(reports: list[Report]) -> str:
    rows: list[list[Any]] = []
    for r in reports:
        audit = r.audit
        rows.append(
            [
                r.scenario,
                r.n,
                "ok" if r.ok else f"FAILED ({len(r.failures)})",
                ", ".join(f"{k} {v}" for k, v in r.faults.items()) or "-",
                f"{r.operation_s:.1f}",
                f"{r.settle_s:.1f}",
                audit.succeeded_intents if audit else "-",
                audit.invoices if audit else "-",
                len(r.journal.server_errors),
            ]
        )
    header = [
        "scenario", "n", "result", "faults", "operation s", "settle s",
        "succeeded PIs", "invoices", "5xx",
    ]  # fmt: skip
    lines = table(header, rows)
    failed = [r for r in reports if not r.ok]
    if failed:
        lines.append("")
        lines.append("First problem of each failed run:")
        lines += [f"* {r.scenario}: {r.failures[0].splitlines()[0]}" for r in failed]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="subscriptions per renewal storm")
    parser.add_argument("--n-updates", type=int, default=50, help="upgrades / retries at once")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--scenarios", default="", help="comma-separated; default: all")
    parser.add_argument("--kills", type=int, default=0, help="worker kills (0: the default)")
    parser.add_argument("--show", type=int, default=5, help="problems printed per run")
    parser.add_argument("--timeout", type=float, default=3600, help="the whole run, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory")
    parser.add_argument("--no-record", dest="record", action="store_false")
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
