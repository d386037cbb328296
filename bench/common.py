"""Shared harness: the embedded stack on free loopback ports, the worker process, the
in-process API, resource sampling, and the RESULTS.md writer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from config import Settings
from devstack.postgres import start_postgres
from devstack.process import Child, free_port, port_open, wait_until
from devstack.smtp_sink import start_smtp_sink
from devstack.temporal import start_temporal

ADMIN_KEY = "rk_bench_admin_0123456789abcdef012345678"
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"


def log(message: str) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def quiet_driver_logs() -> None:
    """The driver's own HTTP clients would log every request at INFO."""
    import logging

    for name in ("httpx", "httpcore", "stripe"):
        logging.getLogger(name).setLevel(logging.WARNING)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """PostgreSQL, Temporal dev server, localstripe and an SMTP sink, all on 127.0.0.1."""

    base: Path
    settings: Settings
    children: list[Child] = field(default_factory=list)
    # Whether worker and API processes may cache bytecode (under the stack's directory, not
    # the repo). The sandbox re-imports workflow modules for every workflow run; without
    # cached bytecode (PYTHONDONTWRITEBYTECODE=1 and a source checkout) each import
    # compiles the source again. Installed wheels (the Docker image) ship bytecode.
    bytecode: bool = True

    def env(self) -> dict[str, str]:
        """The `RECUR_*` environment a worker or API process of this stack runs with."""
        s = self.settings
        inherited = dict(os.environ)
        if self.bytecode:
            inherited.pop("PYTHONDONTWRITEBYTECODE", None)
            inherited["PYTHONPYCACHEPREFIX"] = str(self.base / "pycache")
        else:
            inherited["PYTHONDONTWRITEBYTECODE"] = "1"
        return {
            **inherited,
            "RECUR_DATA_DIR": str(self.base),
            "RECUR_DATABASE_URL": s.effective_database_url,
            "RECUR_TEMPORAL_ADDRESS": s.temporal_address,
            "RECUR_TASK_QUEUE": s.task_queue,
            "RECUR_STRIPE_API_BASE": s.effective_stripe_api_base or "",
            "RECUR_SMTP_URL": s.effective_smtp_url,
            "RECUR_WORKER_METRICS_PORT": "0",
            "RECUR_ADMIN_KEY": ADMIN_KEY,
            "RECUR_LOG_LEVEL": s.log_level,
            "RECUR_LOG_JSON": "true",
            "PYTHONUNBUFFERED": "1",
        }

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def stop(self) -> None:
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                child.stop()


def start_stack(log_level: str = "INFO", keep: bool = False, bytecode: bool = True) -> Stack:
    base = Path(tempfile.mkdtemp(prefix="recur-bench-"))
    log(f"stack under {base}")
    children: list[Child] = []
    stack: Stack | None = None
    try:
        pg, temporal, stripe, smtp = free_port(), free_port(), free_port(), free_port()
        children.append(start_postgres(base / "pg", pg, base / "postgres.log", durable=False))
        children.append(start_temporal(port=temporal, ui_port=None, log_path=base / "temporal.log"))
        children.append(start_indexed_localstripe(stripe, base / "localstripe.log"))
        children.append(
            start_smtp_sink(port=smtp, maildir=base / "mail", log_path=base / "smtp.log")
        )
        settings = Settings(
            data_dir=base,
            database_url=f"postgresql+psycopg://recur@127.0.0.1:{pg}/recur",
            temporal_address=f"127.0.0.1:{temporal}",
            stripe_api_base=f"http://127.0.0.1:{stripe}",
            smtp_url=f"smtp://127.0.0.1:{smtp}",
            task_queue="recur-bench",
            admin_key=ADMIN_KEY,
            worker_metrics_port=0,
            log_level=log_level,
            log_json=True,
        )
        from db.migrate import upgrade

        upgrade(settings.effective_database_url)
        stack = Stack(base=base, settings=settings, children=children, bytecode=bytecode)
        return stack
    except BaseException:
        for child in reversed(children):
            with contextlib.suppress(Exception):
                child.stop()
        raise
    finally:
        if stack is None and not keep:
            shutil.rmtree(base, ignore_errors=True)


def start_indexed_localstripe(port: int, log_path: Path) -> Child:
    """localstripe as `devstack.stripe_fake` starts it, minus its per-charge store scan
    (`bench/localstripe_indexed.py`), so the fake does not become the bottleneck."""
    argv = [sys.executable, "-m", "bench.localstripe_indexed", "--port", str(port)]
    child = Child("localstripe", argv, log_path, cwd=REPO).start()

    def ready() -> bool:
        child.ensure_alive()
        return port_open("127.0.0.1", port)

    wait_until(ready, "localstripe")
    return child


def remove_stack(stack: Stack, keep: bool) -> None:
    stack.stop()
    if keep:
        log(f"kept {stack.base} (logs, maildir)")
    else:
        shutil.rmtree(stack.base, ignore_errors=True)


# --------------------------------------------------------------------------- worker process


def spawn(stack: Stack, argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """A process of the benchmark (worker, API) in the repo, with the stack's environment,
    its output appended to `log_path`, in a session of its own (signals stay ours)."""
    with log_path.open("ab") as out:
        return subprocess.Popen(
            argv,
            cwd=REPO,
            env=stack.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


class WorkerProcess:
    """`python -m bench.worker_proc` with this stack's settings, in its own process."""

    def __init__(
        self,
        stack: Stack,
        tuning: Iterable[str] = (),
        name: str = "worker",
        sandbox: str = "default",
        processes: int = 1,
    ) -> None:
        self.stack = stack
        self.tuning = list(tuning)
        self.sandbox = sandbox
        # More than one process polls the same task queues, as `recur worker` run once per
        # core would; the figures add them up.
        self.log_paths = [
            stack.base / (f"{name}.log" if i == 0 else f"{name}-{i + 1}.log")
            for i in range(max(1, processes))
        ]
        self.log_path = self.log_paths[0]
        self.processes: list[subprocess.Popen[bytes]] = []

    def _spawn(self, log_path: Path) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "bench.worker_proc"]
        for item in self.tuning:
            argv += ["--tune", item]
        argv += ["--sandbox", self.sandbox]
        return spawn(self.stack, argv, log_path)

    def start(self) -> WorkerProcess:
        self.processes = [self._spawn(path) for path in self.log_paths]

        def ready() -> bool:
            for process, path in zip(self.processes, self.log_paths, strict=True):
                if process.poll() is not None:
                    tail = path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"worker exited early:\n{tail}")
            return all(b"READY" in p.read_bytes()[-200_000:] for p in self.log_paths)

        wait_until(ready, "the benchmark worker", timeout=120)
        return self

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self.processes[0] if self.processes else None

    @property
    def pid(self) -> int:
        """The first worker process (the one py-spy samples)."""
        assert self.process is not None
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def rss_mb(self) -> float:
        """Resident memory of all the worker processes together."""
        return sum(psutil.Process(pid).memory_info().rss for pid in self.pids) / 2**20

    def stop(self) -> None:
        running = [p for p in self.processes if p.poll() is None]
        for process in running:
            process.terminate()
        for process in running:
            try:
                process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


# --------------------------------------------------------------------------- in-process API


@contextlib.asynccontextmanager
async def inprocess_api(settings: Settings, client: Client) -> AsyncIterator[httpx.AsyncClient]:
    """The FastAPI app called through ASGI (no socket), authenticated as an admin."""
    from api.app import create_app
    from api.bootstrap import ensure_admin_key
    from db.engine import get_engine

    await ensure_admin_key(get_engine(settings.effective_database_url), ADMIN_KEY)
    app = create_app(settings, temporal=client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://recur.bench",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=None,
        ) as api,
    ):
        yield api


def ok(response: httpx.Response, status: int = 200) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


async def bounded(concurrency: int, items: Iterable[Any], fn: Callable[[Any], Any]) -> list[Any]:
    """Run `fn(item)` for every item with at most `concurrency` in flight; results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: Any) -> Any:
        async with gate:
            return await fn(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


async def create_customers(
    api: httpx.AsyncClient, n: int, concurrency: int, payment_method: str = "pm_card_visa"
) -> list[str]:
    async def one(i: int) -> str:
        body = {"email": f"bench-{i}@example.com", "name": f"Bench {i}"}
        body["payment_method"] = payment_method
        return str(ok(await api.post("/v1/customers", json=body), 201)["id"])

    return await bounded(concurrency, range(n), one)


async def create_plan(api: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": "Bench tier",
        "amount": 1000,
        "currency": "usd",
        "interval": "month",
        "features": ["posts", "archive"],
        **overrides,
    }
    return ok(await api.post("/v1/plans", json=body), 201)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- sampling


def stack_processes(stack: Stack, worker: WorkerProcess | None) -> dict[str, list[psutil.Process]]:
    """Component name -> its processes (PostgreSQL's backends included)."""

    def tree(pid: int) -> list[psutil.Process]:
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    out: dict[str, list[psutil.Process]] = {}
    for child in stack.children:
        if child.process is not None:
            out[child.name] = tree(child.process.pid)
    if worker is not None:
        out["worker"] = [p for pid in worker.pids for p in tree(pid)]
    out["driver"] = [psutil.Process()]
    return out


def cpu_ms_per_item(seconds: dict[str, float], n: int, names: Iterable[str] | None = None) -> float:
    """CPU milliseconds per item of the named components (or all) in `seconds` (a
    `CpuMeter.seconds`, or several added up)."""
    keys = list(names) if names is not None else list(seconds)
    return 1000 * sum(seconds.get(k, 0.0) for k in keys) / max(n, 1)


class CpuMeter:
    """CPU seconds each component spent between `start()` and `stop()`."""

    def __init__(self, stack: Stack, worker: WorkerProcess | None, extra: dict[str, int]) -> None:
        self.stack, self.worker, self.extra = stack, worker, extra
        self._before: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self._t0 = 0.0
        self.wall = 0.0

    def _sample(self) -> dict[str, float]:
        procs = stack_processes(self.stack, self.worker)
        for name, pid in self.extra.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                procs[name] = [psutil.Process(pid)]
        out: dict[str, float] = {}
        for name, group in procs.items():
            total = 0.0
            for p in group:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    t = p.cpu_times()
                    total += t.user + t.system
            out[name] = total
        return out

    def start(self) -> None:
        self._before = self._sample()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._t0
        after = self._sample()
        # PostgreSQL backends come and go; a vanished backend's time is lost (small).
        self.seconds = {k: max(0.0, after[k] - self._before.get(k, 0.0)) for k in after}

    def per_item_ms(self, n: int, names: Iterable[str] | None = None) -> float:
        """CPU milliseconds per item (renewal, request) of the named components (or all)."""
        return cpu_ms_per_item(self.seconds, n, names)

    def summary(self) -> str:
        parts = [f"{k} {v:.1f}s" for k, v in sorted(self.seconds.items(), key=lambda kv: -kv[1])]
        busy = sum(self.seconds.values()) / self.wall if self.wall else 0.0
        return ", ".join(parts) + f" (total {busy:.2f} cores busy over {self.wall:.1f}s)"


class RssSampler:
    """Peak RSS of one process (or of several together), sampled in the background."""

    def __init__(self, pid: int | Iterable[int], every: float = 0.5) -> None:
        self.pids = [pid] if isinstance(pid, int) else list(pid)
        self.every = every
        self.peak_mb = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        procs = [psutil.Process(pid) for pid in self.pids]
        while True:
            with contextlib.suppress(psutil.Error):
                total = sum(proc.memory_info().rss for proc in procs)
                self.peak_mb = max(self.peak_mb, total / 2**20)
            await asyncio.sleep(self.every)

    def start(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> float:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.peak_mb


async def wait_quiet(
    pid: int | Iterable[int], threshold: float = 0.05, timeout: float = 120.0
) -> float:
    """Wait until a process (or several together) uses under `threshold` of a core over 1 s."""
    procs = [psutil.Process(p) for p in ([pid] if isinstance(pid, int) else pid)]
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.cpu_percent(None)
    busy = 1.0
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        busy = sum(proc.cpu_percent(None) for proc in procs) / 100
        if busy < threshold:
            break
    return busy


async def wait_stack_quiet(
    stack: Stack, worker: WorkerProcess, threshold: float = 0.1, timeout: float = 180.0
) -> tuple[float, float]:
    """Wait until the whole stack (server, database, fakes, worker) is idle: work a phase
    left behind (the server's visibility and transfer queues, the receipts) must not land
    in the next phase's figures. Returns (seconds waited, cores busy at the end)."""
    t = time.perf_counter()
    procs = stack_processes(stack, worker)
    pids = [p.pid for name, group in procs.items() if name != "driver" for p in group]
    busy = await wait_quiet(pids, threshold=threshold, timeout=timeout)
    return time.perf_counter() - t, busy


# --------------------------------------------------------------------------- SQL helpers


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


# --------------------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --------------------------------------------------------------------------- results


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_state() -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line for line in git("status", "--porcelain").splitlines() if line]
    return f"{commit}" + (f" + {len(dirty)} uncommitted paths" if dirty else " (clean)")


def machine() -> str:
    ram = psutil.virtual_memory().total / 2**30
    import temporalio

    return (
        f"{os.cpu_count()} x {cpu_model()}, {ram:.1f} GiB RAM; "
        f"Python {platform.python_version()}, temporalio {temporalio.__version__}"
    )


def command_line() -> str:
    argv = [a for a in sys.argv]
    if argv and argv[0].endswith(".py"):
        module = Path(argv[0]).resolve().relative_to(REPO).with_suffix("")
        argv = ["-m", ".".join(module.parts), *argv[1:]]
    return ".venv/bin/python " + " ".join(shlex.quote(a) for a in argv)


def append_results(title: str, body: list[str], record: bool = True) -> str:
    """Append one dated section to bench/RESULTS.md (never rewriting what is there)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = [
        "",
        f"## {title} — {now}",
        "",
        f"- command: `{command_line()}`",
        f"- machine: {machine()}",
        f"- commit: {git_state()}",
        "",
        *body,
        "",
    ]
    text_out = "\n".join(section)
    if not record:
        return text_out
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach run appends a section.\n")
    with RESULTS.open("a") as fh:
        fh.write(text_out)
    return text_out


def table(header: list[str], data: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in data]
    return out


# --------------------------------------------------------------------------- charge audit


async def charge_audit(engine: AsyncEngine, stripe_base: str, api_key: str) -> dict[str, int]:
    """Duplicated or failed charges, from PostgreSQL and from what localstripe holds.

    Every succeeded PaymentIntent in localstripe must belong to exactly one paid invoice
    (its `recur_invoice_id` metadata) and be the one the invoice's succeeded attempt
    recorded; every paid invoice with a positive total must have exactly one.
    """
    db_dupes = await scalar(
        engine,
        "SELECT count(*) FROM (SELECT invoice_id FROM payment_attempts"
        " WHERE status = 'succeeded' GROUP BY invoice_id HAVING count(*) > 1) t",
    )
    failed = await scalar(
        engine, "SELECT count(*) FROM payment_attempts WHERE status <> 'succeeded'"
    )
    paid = await rows(
        engine,
        "SELECT i.id, a.stripe_payment_intent_id FROM invoices i"
        " JOIN payment_attempts a ON a.invoice_id = i.id AND a.status = 'succeeded'"
        " WHERE i.status = 'paid' AND i.total > 0",
    )
    recorded = {pi for _, pi in paid if pi}
    headers = {"Authorization": f"Bearer {api_key}"}
    intents: set[str] = set()
    async with httpx.AsyncClient(base_url=stripe_base, headers=headers, timeout=120) as http:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["starting_after"] = after
            page = (await http.get("/v1/charges", params=params)).json()
            for charge in page["data"]:
                if charge["status"] == "succeeded" and charge.get("payment_intent"):
                    intents.add(charge["payment_intent"])
            if not page.get("has_more") or not page["data"]:
                break
            after = page["data"][-1]["id"]

        async def invoice_of(pi: str) -> str:
            body = (await http.get(f"/v1/payment_intents/{pi}")).json()
            return str(body.get("metadata", {}).get("recur_invoice_id"))

        invoice_ids = await bounded(16, sorted(intents), invoice_of)
    per_invoice: dict[str, int] = {}
    for inv in invoice_ids:
        per_invoice[inv] = per_invoice.get(inv, 0) + 1
    paid_ids = {i for i, _ in paid}
    return {
        "paid_invoices": len(paid_ids),
        "stripe_succeeded_intents": len(intents),
        "db_duplicate_succeeded_attempts": int(db_dupes or 0),
        "db_failed_attempts": int(failed or 0),
        "stripe_duplicate_intents_per_invoice": sum(c - 1 for c in per_invoice.values() if c > 1),
        "stripe_intents_without_paid_invoice": sum(
            c for inv, c in per_invoice.items() if inv not in paid_ids
        ),
        "paid_invoices_without_intent": len(paid_ids - set(per_invoice)),
        "intents_not_recorded": len(intents - recorded),
    }


def audit_problems(audit: dict[str, int]) -> int:
    """Failed or duplicated charges: everything in the audit that must be zero."""
    return sum(
        v for k, v in audit.items() if k not in ("paid_invoices", "stripe_succeeded_intents")
    )


# --------------------------------------------------------------------------- profiling


class PySpy:
    """`py-spy record` (raw collapsed stacks) of one process while a phase runs."""

    def __init__(self, pid: int, out: Path, rate: int = 100, gil: bool = False) -> None:
        # gil: sample only the thread holding the GIL (what burns the process's Python CPU;
        # otherwise threads waiting for the GIL or in a blocking call count as busy too).
        self.pid, self.out, self.rate, self.gil = pid, out, rate, gil
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PySpy:
        binary = Path(sys.executable).parent / "py-spy"
        self.out.parent.mkdir(parents=True, exist_ok=True)
        argv = [str(binary), "record", "--pid", str(self.pid), "--rate", str(self.rate)]
        argv += ["--format", "raw", "--output", str(self.out), "--nonblocking"]
        if self.gil:
            argv.append("--gil")
        self._proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        return self

    def stop(self) -> Path:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        return self.out


def top_frames(raw: Path, limit: int = 25) -> list[str]:
    """Self and inclusive sample shares of the hottest functions in a py-spy raw file."""
    self_count: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [f.strip() for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        self_count[frames[-1]] = self_count.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
    if not total:
        return ["(no samples)"]
    out = [f"{total} samples; self time:"]
    for f, c in sorted(self_count.items(), key=lambda kv: -kv[1])[:limit]:
        out.append(f"  {100 * c / total:5.1f}%  {f}")
    out.append("inclusive:")
    for f, c in sorted(incl.items(), key=lambda kv: -kv[1])[:limit]:
        out.append(f"  {100 * c / total:5.1f}%  {f}")
    return out
