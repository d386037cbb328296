"""The entitlement check's throughput and latency beside a bare FastAPI endpoint.

    .venv/bin/python -m bench.entitlements              # defaults: 10 s phases, 3 rounds

Starts its own stack on free loopback ports (PostgreSQL, Temporal dev server, localstripe,
SMTP sink; `bench.common.start_stack`), migrates it and seeds `--customers` customers'
entitlements (1-4 features each) straight into the `entitlements` table. Then serves two
apps, each with uvicorn in a process of its own on 127.0.0.1, exactly as `recur api` does
(one process, no access log):

* Recur: `api.app:app_factory`, `GET /v1/entitlements/check` with a product API key
  (auth, middleware, metrics, schemas: everything a real request goes through);
* bare: `bench.bare_check_app:app`, `GET /check`, the same SQL on the same table and index
  through the same driver and pool size, nothing else.

An aiohttp load generator in this process runs, per round and per app (alternating, so
drift hits both): a warm-up, `--clients` (50) concurrent clients for `--seconds` (or
`--max-requests`), then one client for `--single` requests. Queries are random customers
and features, about 3 in 4 entitled. Prints requests/s and p50/p99 and appends them to
bench/RESULTS.md (`--no-record` to skip). Targets: Recur >= 0.7x the bare requests/s at
50 clients, p99 < 5 ms at one client.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import psutil
import psycopg

from bench.common import (
    REPO,
    PySpy,
    append_results,
    load,
    log,
    percentile,
    remove_stack,
    start_stack,
    table,
    top_frames,
)
from config import Settings
from devstack.process import free_port, wait_until

FEATURES = ["posts", "archive", "discord", "merch", "live_qa"]
BENCH_KEY = "rk_prod_bench_entitlements_0123456789abcdef"


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """One uvicorn process serving `target` on a free loopback port."""

    name: str
    target: list[str]  # uvicorn's app arguments
    check_path: str
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str) -> Server:
        argv = [sys.executable, "-m", "uvicorn", *self.target]
        argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        # Both apps on the event loop `recur api` runs on (RECUR_EVENT_LOOP).
        argv += ["--loop", Settings().event_loop]
        argv += ["--no-access-log", "--log-level", "warning"]
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(self.log_path.read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(self.url + ready_path, timeout=1) as reply:
                    return bool(reply.status == 200)
            except OSError:
                return False

        wait_until(ready, f"the {self.name} server", timeout=60)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


# --------------------------------------------------------------------------- data


def seed(database_url: str, customers: int, rng: random.Random) -> list[tuple[str, str]]:
    """Entitlement rows for `customers` customers; returns (customer, feature) queries."""
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    now = datetime.now(UTC)
    until = now + timedelta(days=30)
    queries: list[tuple[str, str]] = []
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            with cur.copy(
                "COPY entitlements (customer_id, feature, subscription_id, plan_id,"
                " active_until, granted_at) FROM STDIN"
            ) as copy:
                for i in range(customers):
                    customer = f"cus_bench{i:08d}"
                    granted = rng.sample(FEATURES, rng.randint(1, 4))
                    for feature in granted:
                        copy.write_row(
                            (customer, feature, f"sub_bench{i:08d}", "plan_bench", until, now)
                        )
                    queries.append((customer, rng.choice(granted)))
                    if rng.random() < 0.33:
                        missing = [f for f in FEATURES if f not in granted]
                        queries.append((customer, rng.choice(missing)))
            cur.execute(
                "INSERT INTO api_keys (id, name, role, key_hash, prefix, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                ("key_bench", "bench", "product", _hash(BENCH_KEY), BENCH_KEY[:12], now),
            )
        conn.execute("ANALYZE entitlements")
    rng.shuffle(queries)
    return queries


def _hash(raw: str) -> str:
    import hashlib

    return hashlib.sha256(raw.encode()).hexdigest()


# --------------------------------------------------------------------------- load


@dataclass
class PhaseResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu: float
    load: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        """Server CPU time per request, microseconds."""
        return self.server_cpu / self.requests * 1e6 if self.requests else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q) if self.latencies_ms else float("nan")


async def phase(
    server: Server,
    headers: dict[str, str],
    queries: list[tuple[str, str]],
    *,
    clients: int,
    seconds: float,
    max_requests: int,
) -> PhaseResult:
    """`clients` concurrent loops of GET until `seconds` pass or `max_requests` are sent."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(server.url, headers=headers, connector=connector) as http:

        async def client(offset: int) -> None:
            nonlocal errors, sent
            i = offset
            while sent < max_requests and time.perf_counter() < deadline:
                sent += 1
                customer, feature = queries[i % len(queries)]
                i += clients
                started = time.perf_counter()
                async with http.get(
                    server.check_path, params={"customer_id": customer, "feature": feature}
                ) as reply:
                    await reply.read()
                    ok = reply.status == 200
                latencies.append((time.perf_counter() - started) * 1000)
                if not ok:
                    errors += 1

        cpu0, t0 = server.cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - t0
        cpu = server.cpu_seconds() - cpu0
    return PhaseResult(len(latencies), errors, elapsed, latencies, cpu)


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    stack = start_stack("WARNING")
    servers: list[Server] = []
    try:
        db_url = stack.settings.effective_database_url
        log(f"seeding {args.customers} customers' entitlements")
        queries = seed(db_url, args.customers, rng)
        count = _rows(db_url)
        log(f"{count} entitlement rows, {len(queries)} distinct queries")
        env = {**stack.env(), "RECUR_LOG_LEVEL": "WARNING", "BENCH_DATABASE_URL": db_url}
        recur = Server(
            "recur",
            ["api.app:app_factory", "--factory"],
            "/v1/entitlements/check",
            env,
            stack.base / "api.log",
        ).start("/healthz")
        servers.append(recur)
        bare = Server(
            "bare", ["bench.bare_check_app:app"], "/check", env, stack.base / "bare.log"
        ).start("/check?customer_id=x&feature=y")
        servers.append(bare)
        auth = {"Authorization": f"Bearer {BENCH_KEY}"}
        # The load generator's own long-lived objects out of the collector's way (both apps
        # see the same client); the seeded query list alone is 27k tuples.
        gc.collect()
        gc.freeze()
        results: dict[str, dict[str, list[PhaseResult]]] = {
            name: {"many": [], "one": []} for name in ("bare", "recur")
        }
        profile: list[str] = []
        for round_no in range(1, args.rounds + 1):
            for server, headers in ((bare, {}), (recur, auth)):
                await phase(
                    server, headers, queries, clients=args.clients, seconds=1.5, max_requests=10**9
                )
                spy = None
                if args.profile and server is recur and round_no == args.rounds:
                    spy = PySpy(server.pid, Path(args.profile) / "recur-check.raw").start()
                many = await phase(
                    server,
                    headers,
                    queries,
                    clients=args.clients,
                    seconds=args.seconds,
                    max_requests=args.max_requests,
                )
                if spy is not None:
                    profile = top_frames(spy.stop())
                one = await phase(
                    server,
                    headers,
                    queries,
                    clients=1,
                    seconds=args.seconds,
                    max_requests=args.single,
                )
                many.load = load().split()[0]
                results[server.name]["many"].append(many)
                results[server.name]["one"].append(one)
                log(
                    f"round {round_no} {server.name}: {many.rps:.0f} req/s at {args.clients}"
                    f" clients (p50 {many.p(50):.2f} ms, p99 {many.p(99):.2f} ms,"
                    f" server {many.server_cpu / many.seconds:.2f} cores,"
                    f" {many.cpu_us:.0f} us CPU/request, errors {many.errors});"
                    f" 1 client p50 {one.p(50):.2f} ms p99 {one.p(99):.2f} ms"
                    f" (errors {one.errors}); load {load()}"
                )
        report(args, results, count, profile)
        failed = any(r.errors for s in results.values() for rs in s.values() for r in rs)
        return 1 if failed else 0
    finally:
        for server in reversed(servers):
            server.stop()
        remove_stack(stack, args.keep)


def _rows(database_url: str) -> int:
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM entitlements").fetchone()
    return int(row[0]) if row else 0


def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, list[PhaseResult]]],
    rows: int,
    profile: list[str],
) -> None:
    data = []
    for round_no in range(args.rounds):
        bare_many, recur_many = (
            results["bare"]["many"][round_no],
            results["recur"]["many"][round_no],
        )
        bare_one, recur_one = results["bare"]["one"][round_no], results["recur"]["one"][round_no]
        data.append(
            [
                round_no + 1,
                f"{recur_many.rps:.0f}",
                f"{bare_many.rps:.0f}",
                f"**{recur_many.rps / bare_many.rps:.2f}**",
                f"{recur_many.p(50):.2f} / {recur_many.p(99):.2f}",
                f"{bare_many.p(50):.2f} / {bare_many.p(99):.2f}",
                f"{recur_one.p(50):.2f} / **{recur_one.p(99):.2f}**",
                f"{bare_one.p(50):.2f} / {bare_one.p(99):.2f}",
                f"{bare_many.load} / {recur_many.load}",
            ]
        )
    ratio = statistics.median(
        r.rps / b.rps
        for r, b in zip(results["recur"]["many"], results["bare"]["many"], strict=True)
    )
    single_p99 = statistics.median(r.p(99) for r in results["recur"]["one"])
    cores = {
        name: statistics.median(r.server_cpu / r.seconds for r in results[name]["many"])
        for name in ("recur", "bare")
    }
    cpu_us = {
        name: statistics.median(r.cpu_us for r in results[name]["many"])
        for name in ("recur", "bare")
    }
    errors = sum(r.errors for s in results.values() for rs in s.values() for r in rs)
    body = [
        f"{rows} entitlement rows ({args.customers} customers); {args.clients} concurrent "
        f"clients for {args.seconds:g} s (at most {args.max_requests} requests) then one client "
        f"for {args.single} requests, per app and round, after a 1.5 s warm-up; apps alternate. "
        "Both servers: uvicorn, one process, no access log, on 127.0.0.1; the load generator "
        "(aiohttp) shares the machine. Latencies in ms (p50 / p99), measured by the client. "
        "The load average (2 cores here) shows what else the machine was running.",
        "",
        *table(
            [
                "round",
                "Recur req/s",
                "bare req/s",
                "Recur / bare",
                f"Recur {args.clients} clients",
                f"bare {args.clients} clients",
                "Recur 1 client",
                "bare 1 client",
                "load 1 min (bare / Recur)",
            ],
            data,
        ),
        "",
        f"- median Recur / bare requests/s: **{ratio:.2f}** (target >= 0.70)",
        f"- median Recur p99 at one client: **{single_p99:.2f} ms** (target < 5 ms)",
        f"- server CPU at {args.clients} clients (median): Recur {cores['recur']:.2f} cores, "
        f"bare {cores['bare']:.2f} cores; server CPU per request: Recur {cpu_us['recur']:.0f} us, "
        f"bare {cpu_us['bare']:.0f} us",
        f"- non-200 answers: {errors}",
    ]
    if profile:
        body += ["", "Recur server profile (py-spy, last round):", "", "```", *profile, "```"]
    text_out = append_results("Entitlement check", body, record=not args.no_record)
    print(text_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--max-requests", type=int, default=100_000, help="per 50-client phase")
    parser.add_argument("--single", type=int, default=3000, help="requests at one client")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", help="directory for a py-spy profile of the Recur server")
    parser.add_argument("--timeout", type=float, default=900.0, help="whole run, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory")
    parser.add_argument("--no-record", action="store_true", help="do not append RESULTS.md")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")

    async def bounded_run() -> int:
        return await asyncio.wait_for(run(args), args.timeout)

    sys.exit(asyncio.run(bounded_run()))


if __name__ == "__main__":
    main()
