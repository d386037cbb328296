"""Usage ingestion beside a bare insert, and the reads that must not scan raw events.

    .venv/bin/python -m bench.usage                      # defaults: 10 s phases, 3 rounds

Starts its own stack on free loopback ports (`bench.common.start_stack`), migrates it and
seeds `--customers` customers, each with an active subscription (period around now) to a
plan whose feature `calls` is limited by a `sum` meter over `api_call` events. Then serves
two apps, each with uvicorn in a process of its own on 127.0.0.1 (as `recur api` does):

* Recur: `api.app:app_factory`: `POST /v1/usage_events/batch` and `POST /v1/usage_events`
  with a product key (auth, validation, the metering lookup, deduplication, aggregates);
* bare: `bench.bare_usage_app:app`: `POST /batch` and `POST /event`, the same events
  inserted into the same `usage_events` table through the same driver and pool size,
  nothing else (the bare app's events name other customers, so the tables stay apart).

Per round and app (alternating): `--clients` (8) clients posting batches of `--batch`
(1,000) fresh events for `--seconds`, then the same clients posting single events. Then
one customer's current period gets `--big` (1,000,000) events — loaded with COPY and
aggregated once in SQL, which is what ingestion would have kept, to keep the run short —
and one client times `GET /v1/entitlements/check` for the limited feature (p99 target
< 5 ms), `GET /v1/subscriptions/{id}/usage` and the `usage_lines` activity's computation of
the period's invoice line (< 1 s), beside a full scan of the raw events for contrast.
Before that, every seeded customer's aggregate is checked against the sum of its raw
events (they must be equal). Appends the figures to
bench/RESULTS.md (`--no-record` to skip).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import psycopg
from sqlalchemy.ext.asyncio import create_async_engine

from activities.usage import UsageActivities
from bench.common import (
    CpuMeter,
    append_results,
    load,
    log,
    percentile,
    remove_stack,
    start_stack,
    table,
)
from bench.entitlements import Server
from domain.usage_contracts import MeteredItem, UsageLinesRequest

BENCH_KEY = "rk_prod_bench_usage_0123456789abcdef012345"
METER, PLAN, FEATURE = "meter_bench_tokens", "plan_bench_usage", "calls"
BIG_CUSTOMER, BIG_SUB = "cus_bench_big", "sub_bench_big"


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def seed(database_url: str, customers: int) -> tuple[datetime, datetime]:
    """Meter, plan, customers with active subscriptions and entitlements, the bench key."""
    now = datetime.now(UTC)
    start, end = now - timedelta(days=10), now + timedelta(days=20)
    with psycopg.connect(_dsn(database_url)) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO meters VALUES (%s, 'tokens', 'api_call', 'sum', 'tokens', NULL, %s)",
            (METER, now),
        )
        cur.execute(
            "INSERT INTO plans (id, name, amount, currency, interval, interval_count,"
            " trial_days, features, created_at, usage_type, package_size)"
            " VALUES (%s, 'bench', 1000, 'usd', 'month', 1, 0, %s, %s, 'licensed', 1)",
            (PLAN, '["calls"]', now),
        )
        cur.execute(
            "INSERT INTO plan_feature_limits VALUES (%s, %s, %s, %s, 0)",
            (PLAN, FEATURE, METER, 10**12),
        )
        ids = [f"cus_bench{i:06d}" for i in range(customers)] + [BIG_CUSTOMER]
        for i, customer in enumerate(ids):
            sub = BIG_SUB if customer == BIG_CUSTOMER else f"sub_bench{i:06d}"
            cur.execute(
                "INSERT INTO customers (id, email, created_at) VALUES (%s, %s, %s)",
                (customer, f"{customer}@example.com", now),
            )
            cur.execute(
                "INSERT INTO subscriptions (id, customer_id, plan_id, status,"
                " current_period_start, current_period_end, billing_cycle_anchor,"
                " cancel_at_period_end, dunning, created_at, updated_at, state_version)"
                " VALUES (%s, %s, %s, 'active', %s, %s, %s, false, '{}', %s, %s, 1)",
                (sub, customer, PLAN, start, end, start, now, now),
            )
            cur.execute(
                "INSERT INTO subscription_items (id, subscription_id, plan_id, quantity,"
                " position, created_at) VALUES (%s, %s, %s, 1, 0, %s)",
                (f"si_{sub}", sub, PLAN, now),
            )
            cur.execute(
                "INSERT INTO entitlements (customer_id, feature, subscription_id, plan_id,"
                " active_until, granted_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (customer, FEATURE, sub, PLAN, end, now),
            )
        digest = hashlib.sha256(BENCH_KEY.encode()).hexdigest()
        cur.execute(
            "INSERT INTO api_keys (id, name, role, key_hash, prefix, created_at)"
            " VALUES ('key_bench', 'bench', 'product', %s, %s, %s)",
            (digest, BENCH_KEY[:12], now),
        )
    return start, end


@dataclass
class Phase:
    events: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    cpu: dict[str, float] | None = None  # CPU seconds per component during the phase

    def cpu_us(self, name: str) -> float:
        """CPU microseconds per event of one component ("server" or "postgres")."""
        return (self.cpu or {}).get(name, 0.0) / max(self.events, 1) * 1e6

    @property
    def eps(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q) if self.latencies_ms else float("nan")


async def post_phase(
    url: str,
    path: str,
    headers: dict[str, str],
    make_body: Any,
    *,
    clients: int,
    seconds: float,
    per_request: int,
) -> Phase:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as http:

        async def client(k: int) -> None:
            nonlocal errors
            i = 0
            while time.perf_counter() < deadline:
                body = make_body(k, i)
                i += 1
                started = time.perf_counter()
                async with http.post(path, json=body) as reply:
                    answer = await reply.json(content_type=None)
                    good = reply.status == 202 and not answer.get("rejected")
                latencies.append((time.perf_counter() - started) * 1000)
                if not good:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - t0
    requests = len(latencies)
    return Phase(requests * per_request, requests, errors, elapsed, latencies)


def events_for(prefix: str, customers: list[str], rng: random.Random, n: int) -> list[Any]:
    return [
        {
            "transaction_id": f"{prefix}-{j}",
            "customer_id": rng.choice(customers),
            "event_name": "api_call",
            "properties": {"tokens": rng.randint(1, 500)},
        }
        for j in range(n)
    ]


async def get_timings(
    url: str, path: str, headers: dict[str, str], params: dict[str, str], n: int
) -> tuple[list[float], Any]:
    timings: list[float] = []
    answer: Any = None
    async with aiohttp.ClientSession(url, headers=headers) as http:
        for _ in range(n):
            started = time.perf_counter()
            async with http.get(path, params=params) as reply:
                answer = await reply.json()
                assert reply.status == 200, answer
            timings.append((time.perf_counter() - started) * 1000)
    return timings, answer


async def invoice_line_timings(database_url: str, n: int) -> tuple[list[float], str]:
    """The `usage_lines` activity's work for the big customer's period (a draft, not
    closing it), timed `n` times in this process."""
    engine = create_async_engine(database_url)
    try:
        with psycopg.connect(_dsn(database_url)) as conn:
            row = conn.execute(
                "SELECT current_period_start, current_period_end FROM subscriptions WHERE id = %s",
                (BIG_SUB,),
            ).fetchone()
        assert row is not None
        item = MeteredItem(plan_id=PLAN, meter_id=METER, amount=200, package_size=1000)
        req = UsageLinesRequest(
            subscription_id=BIG_SUB,
            customer_id=BIG_CUSTOMER,
            invoice_id="in_bench",
            period_start=row[0],
            period_end=row[1],
            items=[item],
        )
        activities = UsageActivities(engine)
        timings, drafts = [], []
        for _ in range(n):
            started = time.perf_counter()
            drafts = await activities.lines(req, datetime.now(UTC))
            timings.append((time.perf_counter() - started) * 1000)
        return timings, f"{drafts[0].quantity} units: {drafts[0].amount}"
    finally:
        await engine.dispose()


def load_big(database_url: str, count: int, start: datetime) -> float:
    """`count` events for the big customer inside its period, by COPY, and their aggregate
    computed once in SQL. Returns the seconds of a full scan summing them (for contrast)."""
    with psycopg.connect(_dsn(database_url)) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY usage_events (id, customer_id, transaction_id, event_name, timestamp,"
            " properties, created_at) FROM STDIN"
        ) as copy:
            for i in range(count):
                at = start + timedelta(seconds=i % 800_000)
                copy.write_row(
                    (
                        f"uev_big{i:09d}",
                        BIG_CUSTOMER,
                        f"big-{i}",
                        "api_call",
                        at,
                        f'{{"tokens": {i % 7 + 1}}}',
                        at,
                    )
                )
        conn.commit()
        cur.execute("ANALYZE usage_events")
        t0 = time.perf_counter()
        cur.execute(
            "SELECT sum(CAST(properties->>'tokens' AS numeric)), count(*) FROM usage_events"
            " WHERE customer_id = %s",
            (BIG_CUSTOMER,),
        )
        total, n = cur.fetchone() or (0, 0)
        scan = time.perf_counter() - t0
        cur.execute(
            "INSERT INTO usage_aggregates (subscription_id, meter_id, period_start, period_end,"
            " customer_id, aggregation, quantity, events, updated_at)"
            " SELECT %s, %s, current_period_start, current_period_end, customer_id, 'sum',"
            " %s, %s, now() FROM subscriptions WHERE id = %s",
            (BIG_SUB, METER, total, n, BIG_SUB),
        )
        conn.commit()
    return scan


def verify(database_url: str) -> tuple[int, int]:
    """(customers checked, customers whose aggregate differs from their raw events)."""
    with psycopg.connect(_dsn(database_url)) as conn:
        rows = conn.execute(
            "SELECT a.customer_id, a.quantity, a.events,"
            " (SELECT sum(CAST(e.properties->>'tokens' AS numeric)) FROM usage_events e"
            "  WHERE e.customer_id = a.customer_id),"
            " (SELECT count(*) FROM usage_events e WHERE e.customer_id = a.customer_id)"
            " FROM usage_aggregates a WHERE a.customer_id <> %s",
            (BIG_CUSTOMER,),
        ).fetchall()
    wrong = sum(1 for _, q, n, total, raw in rows if Decimal(q) != Decimal(total) or n != raw)
    return len(rows), wrong


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    stack = start_stack("WARNING")
    servers: list[Server] = []
    try:
        db_url = stack.settings.effective_database_url
        period_start, _ = seed(db_url, args.customers)
        customers = [f"cus_bench{i:06d}" for i in range(args.customers)]
        bare_customers = [f"cus_bare{i:06d}" for i in range(args.customers)]
        env = {**stack.env(), "RECUR_LOG_LEVEL": "WARNING", "BENCH_DATABASE_URL": db_url}
        recur = Server(
            "recur", ["api.app:app_factory", "--factory"], "", env, stack.base / "api.log"
        ).start("/healthz")
        servers.append(recur)
        bare = Server("bare", ["bench.bare_usage_app:app"], "", env, stack.base / "bare.log")
        bare.start("/docs")
        servers.append(bare)
        auth = {"Authorization": f"Bearer {BENCH_KEY}"}
        apps = {
            "bare": (bare, {}, bare_customers, "/batch", "/event"),
            "recur": (recur, auth, customers, "/v1/usage_events/batch", "/v1/usage_events"),
        }
        results: dict[str, dict[str, list[Phase]]] = {n: {"batch": [], "one": []} for n in apps}
        for round_no in range(1, args.rounds + 1):
            for name, (server, headers, who, batch_path, one_path) in apps.items():
                tag = f"{name}{round_no}"

                def batch_body(k: int, i: int, tag: str = tag, who: list[str] = who) -> Any:
                    return {"events": events_for(f"{tag}-b{k}-{i}", who, rng, args.batch)}

                def one_body(k: int, i: int, tag: str = tag, who: list[str] = who) -> Any:
                    return events_for(f"{tag}-s{k}-{i}", who, rng, 1)[0]

                meter = CpuMeter(stack, None, {"server": server.pid})
                meter.start()
                many = await post_phase(
                    server.url,
                    batch_path,
                    headers,
                    batch_body,
                    clients=args.clients,
                    seconds=args.seconds,
                    per_request=args.batch,
                )
                meter.stop()
                many.cpu = meter.seconds
                meter.start()
                one = await post_phase(
                    server.url,
                    one_path,
                    headers,
                    one_body,
                    clients=args.clients,
                    seconds=args.seconds,
                    per_request=1,
                )
                meter.stop()
                one.cpu = meter.seconds
                results[name]["batch"].append(many)
                results[name]["one"].append(one)
                log(
                    f"round {round_no} {name}: batches {many.eps:.0f} events/s"
                    f" (p50 {many.p(50):.0f} ms, errors {many.errors}, CPU/event server"
                    f" {many.cpu_us('server'):.0f} us, postgres {many.cpu_us('postgres'):.0f} us);"
                    f" single {one.eps:.0f} events/s (p50 {one.p(50):.2f} ms,"
                    f" errors {one.errors}, CPU/event server {one.cpu_us('server'):.0f} us,"
                    f" postgres {one.cpu_us('postgres'):.0f} us); load {load()}"
                )
        checked, wrong = verify(db_url)
        log(f"aggregates checked against raw events: {checked} customers, {wrong} differ")
        log(f"loading {args.big} events into one customer's period")
        scan = load_big(db_url, args.big, period_start)
        params = {"customer_id": BIG_CUSTOMER, "feature": FEATURE}
        await get_timings(recur.url, "/v1/entitlements/check", auth, params, 200)
        checks, answer = await get_timings(
            recur.url, "/v1/entitlements/check", auth, params, args.single
        )
        log(f"check: {answer}")
        usage_path = f"/v1/subscriptions/{BIG_SUB}/usage"
        lines, _ = await get_timings(recur.url, usage_path, auth, {}, 50)
        priced, line = await invoice_line_timings(db_url, 50)
        log(f"invoice line: {line}")
        report(args, results, checks, answer, lines, priced, line, scan, checked, wrong)
        failed = wrong or any(p.errors for r in results.values() for ps in r.values() for p in ps)
        return 1 if failed else 0
    finally:
        for server in reversed(servers):
            server.stop()
        remove_stack(stack, args.keep)


def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, list[Phase]]],
    checks: list[float],
    answer: Any,
    lines: list[float],
    priced: list[float],
    line: str,
    scan: float,
    checked: int,
    wrong: int,
) -> None:
    rows = []
    for i in range(args.rounds):
        rb, bb = results["recur"]["batch"][i], results["bare"]["batch"][i]
        ro, bo = results["recur"]["one"][i], results["bare"]["one"][i]
        rows.append(
            [
                i + 1,
                f"{rb.eps:.0f}",
                f"{bb.eps:.0f}",
                f"**{rb.eps / bb.eps:.2f}**",
                f"{ro.eps:.0f}",
                f"{bo.eps:.0f}",
                f"**{ro.eps / bo.eps:.2f}**",
                f"{rb.cpu_us('server'):.0f} + {rb.cpu_us('postgres'):.0f} / "
                f"{bb.cpu_us('server'):.0f} + {bb.cpu_us('postgres'):.0f}",
                f"{ro.cpu_us('server'):.0f} + {ro.cpu_us('postgres'):.0f} / "
                f"{bo.cpu_us('server'):.0f} + {bo.cpu_us('postgres'):.0f}",
            ]
        )
    recur, bare = results["recur"], results["bare"]
    ratio_batch = statistics.median(
        r.eps / b.eps for r, b in zip(recur["batch"], bare["batch"], strict=True)
    )
    ratio_one = statistics.median(
        r.eps / b.eps for r, b in zip(recur["one"], bare["one"], strict=True)
    )
    body = [
        "**Taken on a busy machine** (other sessions were running tests and benchmarks on the "
        f"same 2 cores; load average at the end {load()}); re-run with the command above on a "
        "quiet machine for figures that mean more than their ratios.",
        "",
        f"{args.customers} customers, each with an active subscription metering `api_call`; "
        f"{args.clients} clients per phase for {args.seconds:g} s: batches of {args.batch} "
        "fresh events, then single events; apps alternate per round. Events per second.",
        "",
        *table(
            [
                "round",
                "Recur batch ev/s",
                "bare batch ev/s",
                "Recur / bare",
                "Recur single ev/s",
                "bare single ev/s",
                "Recur / bare",
                "batch CPU us/event, Recur / bare (API + PostgreSQL)",
                "single CPU us/event, Recur / bare (API + PostgreSQL)",
            ],
            rows,
        ),
        "",
        f"- median Recur / bare, batches: **{ratio_batch:.2f}** (target >= 0.5)",
        f"- median Recur / bare, single events: **{ratio_one:.2f}** (target >= 0.5)",
        f"- aggregates equal to the sum of their raw events: {checked - wrong} of {checked} "
        "customers",
        f"- {args.big:,} events in one customer's current period: `GET /v1/entitlements/check` "
        f"with a limit, one client, {len(checks)} requests: p50 {percentile(checks, 50):.2f} ms, "
        f"**p99 {percentile(checks, 99):.2f} ms** (target < 5 ms); answer `{answer}`",
        f"- the period's usage line, `GET /v1/subscriptions/{{id}}/usage`, 50 requests: p50 "
        f"{percentile(lines, 50):.2f} ms, **max {max(lines):.2f} ms** (target < 1 s); a full "
        f"scan summing the raw events instead takes {scan * 1000:.0f} ms",
        f"- the invoice's usage line (`activities.usage.UsageActivities.lines`, 200 per 1,000 "
        f"started, in the benchmark's process), 50 calls: p50 {percentile(priced, 50):.2f} ms, "
        f"**max {max(priced):.2f} ms** (target < 1 s): {line}",
    ]
    print(append_results("Usage ingestion and reads", body, record=not args.no_record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--single", type=int, default=3000, help="checks at one client")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=1800.0, help="whole run, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory")
    parser.add_argument("--no-record", action="store_true", help="do not append RESULTS.md")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")

    async def bounded_run() -> int:
        return await asyncio.wait_for(run(args), args.timeout)

    sys.exit(asyncio.run(bounded_run()))


if __name__ == "__main__":
    main()
