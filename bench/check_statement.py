"""The entitlement check's statement alone, with and without its canceling guard.

    .venv/bin/python -m bench.check_statement            # 4,000 executions of each

The check with a usage limit is one statement (`db/repositories/entitlements.py`). Its last
condition leaves out the grants of a subscription canceling at period end once that end has
passed (a `NOT EXISTS` over the subscription and its test clock, by primary keys). This
times the statement as the API sends it and the same statement without that condition, on
one connection in this process (no HTTP, no client), alternating blocks of 100 so that the
machine's drift hits both, for the customer of `bench.usage` whose current period holds
`--big` events (its aggregate, as ingestion keeps it). Appends the figures to
bench/RESULTS.md (`--no-record` to skip).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from sqlalchemy.ext.asyncio import create_async_engine

from bench import usage as usage_bench
from bench.common import append_results, load, log, percentile, remove_stack, start_stack, table
from db.driver import fetch_all
from db.repositories import entitlements

GUARDED = entitlements._CHECK_USAGE
UNGUARDED = GUARDED[: GUARDED.index("AND NOT EXISTS")]


async def measure(database_url: str, blocks: int) -> dict[str, list[float]]:
    engine = create_async_engine(database_url, pool_size=1, isolation_level="AUTOCOMMIT")
    params = {"customer_id": usage_bench.BIG_CUSTOMER, "feature": usage_bench.FEATURE}
    statements = {"with the guard": GUARDED, "without it": UNGUARDED}
    times: dict[str, list[float]] = {name: [] for name in statements}
    async with engine.connect() as conn:
        answers = {name: await fetch_all(conn, sql, params) for name, sql in statements.items()}
        assert answers["with the guard"] == answers["without it"], answers
        for block in range(blocks):
            order = list(statements.items())
            for name, sql in order if block % 2 else reversed(order):
                for _ in range(100):
                    start = time.perf_counter()
                    await fetch_all(conn, sql, params)
                    times[name].append((time.perf_counter() - start) * 1000)
    await engine.dispose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--blocks", type=int, default=40, help="of 100 executions, per form")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    stack = start_stack(log_level="WARNING")
    try:
        url = stack.settings.effective_database_url
        start, _ = usage_bench.seed(url, 1)
        usage_bench.load_big(url, args.big, start)
        log("timing the statement")
        times = asyncio.run(measure(url, args.blocks))
    finally:
        stack.stop()
        remove_stack(stack, keep=False)
    rows = [
        [
            name,
            len(values),
            f"{statistics.median(values):.3f}",
            f"{percentile(values, 99):.3f}",
            f"{statistics.mean(values):.3f}",
        ]
        for name, values in times.items()
    ]
    body = [
        f"One customer with {args.big:,} events in its current period; the check's statement"
        " on one autocommit connection in the benchmark's process, blocks of 100 alternating."
        f" Load average at the end: {load()}.",
        "",
        *table(["statement", "executions", "p50 ms", "p99 ms", "mean ms"], rows),
    ]
    print(append_results("Entitlement check statement", body, record=not args.no_record))


if __name__ == "__main__":
    main()
