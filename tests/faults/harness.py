"""A stack whose every part is a process that can be `kill -9`ed and started again.

PostgreSQL (durable: a crash must not lose a committed row), the Temporal dev server
(state in a SQLite file, so a restart keeps every workflow), localstripe, an SMTP sink,
Recur's worker (`python -m worker`) and API (`python -m cli api`), each in a process
group of its own. The worker reaches Stripe through `StripeProxy`, which injects faults;
the API and the audits reach localstripe directly.

A kill is SIGKILL to the whole process group (PostgreSQL's backends die with the
postmaster, as in a machine crash); a restart uses the same port, data and log file.
Restarts block on readiness, so callers run them in a thread (`asyncio.to_thread`): the
proxy lives in the test's event loop and must keep serving meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from temporalio.client import Client

from api.bootstrap import ensure_admin_key
from config import Settings
from db.migrate import upgrade
from devstack.postgres import start_postgres
from devstack.process import Child, free_port, port_open, wait_until
from devstack.smtp_sink import start_smtp_sink
from devstack.stripe_fake import start_localstripe
from devstack.temporal import start_temporal
from tests.faults.proxy import StripeProxy
from worker import connect_temporal

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "rk_test_faults_0123456789abcdef01234567"


@dataclass
class Proc:
    """One killable process: how to launch it, and what happened to it."""

    name: str
    launch: Callable[[], Child]
    child: Child | None = None
    kills: int = 0
    restarts: int = 0
    crashes: int = 0  # exits nobody asked for (seen by `FaultStack.supervise`)
    expected_down: bool = False

    def start(self) -> Proc:
        self.child = self.launch()
        self.expected_down = False
        return self

    def alive(self) -> bool:
        return self.child is not None and self.child.alive()

    def kill9(self) -> None:
        """SIGKILL the process and everything in its group; wait until it is gone."""
        self.expected_down = True
        child = self.child
        if child is None or child.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=15)
        child.stop()  # closes the log
        self.kills += 1

    def restart(self) -> None:
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        self.expected_down = True
        if self.child is not None:
            with contextlib.suppress(Exception):
                self.child.stop(timeout=10)
            if self.child.process is not None and self.child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.child.process.pid, signal.SIGKILL)


def _wait_port_free(port: int, timeout: float = 20) -> None:
    wait_until(lambda: not port_open("127.0.0.1", port), f"port {port} to close", timeout)


@dataclass
class FaultStack:
    base: Path
    settings: Settings
    ports: dict[str, int]
    proxy: StripeProxy
    procs: dict[str, Proc] = field(default_factory=dict)
    temporal: Client | None = None
    api_url: str = ""

    # ------------------------------------------------------------------ environment

    def env(self, *, stripe_base: str) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECUR_")}
        return {
            **env,
            "RECUR_DATA_DIR": str(self.base),
            "RECUR_DATABASE_URL": s.effective_database_url,
            "RECUR_TEMPORAL_ADDRESS": s.temporal_address,
            "RECUR_TASK_QUEUE": s.task_queue,
            "RECUR_STRIPE_API_BASE": stripe_base,
            "RECUR_SMTP_URL": s.effective_smtp_url,
            "RECUR_ADMIN_KEY": ADMIN_KEY,
            "RECUR_WORKER_METRICS_PORT": "0",
            "RECUR_LOG_LEVEL": "INFO",
            "RECUR_LOG_JSON": "true",
            "RECUR_START_SWEEP_SECONDS": "2",
            "PYTHONUNBUFFERED": "1",
        }

    # ------------------------------------------------------------------ launchers

    def _postgres(self) -> Child:
        port = self.ports["postgres"]
        _wait_port_free(port)
        return start_postgres(self.base / "pg", port, self.base / "postgres.log", durable=True)

    def _temporal(self) -> Child:
        port = self.ports["temporal"]
        _wait_port_free(port)
        return start_temporal(
            port=port,
            ui_port=None,
            log_path=self.base / "temporal.log",
            db_file=self.base / "temporal.sqlite",
        )

    def _worker(self) -> Child:
        log_path = self.base / "worker.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        child = Child(
            "worker",
            [sys.executable, "-m", "worker"],
            log_path,
            env=self.env(stripe_base=self.proxy.url),
            cwd=REPO,
        ).start()

        def ready() -> bool:
            child.ensure_alive()
            with log_path.open("rb") as f:
                f.seek(offset)
                return b'"worker.started"' in f.read()

        wait_until(ready, "the worker to poll", timeout=90)
        return child

    def _api(self) -> Child:
        port = self.ports["api"]
        _wait_port_free(port)
        env = self.env(stripe_base=f"http://127.0.0.1:{self.ports['stripe']}")
        child = Child(
            "api",
            [sys.executable, "-m", "cli", "api", "--host", "127.0.0.1", "--port", str(port)],
            self.base / "api.log",
            env=env,
            cwd=REPO,
        ).start()

        def ready() -> bool:
            child.ensure_alive()
            try:
                with urllib.request.urlopen(f"{self.api_url}/healthz", timeout=2) as reply:
                    return bool(reply.status == 200)
            except OSError:
                return False

        wait_until(ready, "the API", timeout=90)
        return child

    # ------------------------------------------------------------------ life

    def proc(self, name: str) -> Proc:
        return self.procs[name]

    async def kill9(self, name: str) -> None:
        await asyncio.to_thread(self.procs[name].kill9)

    async def restart(self, name: str) -> None:
        await asyncio.to_thread(self.procs[name].restart)

    async def supervise(self, stop: asyncio.Event) -> None:
        """Restart the worker or the API when it exits unasked (as systemd would)."""
        while not stop.is_set():
            for name in ("worker", "api"):
                proc = self.procs[name]
                if not proc.expected_down and not proc.alive():
                    proc.crashes += 1
                    proc.expected_down = True
                    await asyncio.to_thread(proc.restart)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    def stop(self) -> None:
        for name in ("api", "worker", "smtp", "localstripe", "temporal", "postgres"):
            if name in self.procs:
                self.procs[name].stop()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.base / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def log_size(self, name: str) -> int:
        path = self.base / f"{name}.log"
        return path.stat().st_size if path.exists() else 0

    def unhandled_errors(self, since: int) -> Counter[str]:
        """The API's `api.unhandled_error` lines logged after byte `since`, counted by the
        last line of their traceback (the exception and its message)."""
        found: Counter[str] = Counter()
        with (self.base / "api.log").open("rb") as f:
            f.seek(since)
            for raw in f:
                if b"api.unhandled_error" not in raw:
                    continue
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                last = str(entry.get("exception", "")).strip().splitlines()[-1:]
                found[last[0][:300] if last else "?"] += 1
        return found

    def api_client(self, timeout: float = 90.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=timeout,
        )


async def start_fault_stack(base: Path) -> FaultStack:
    """Every process up, migrated, the admin key in place; `stop()` tears it down."""
    ports = {
        name: free_port() for name in ("postgres", "temporal", "stripe", "smtp", "api", "proxy")
    }
    settings = Settings(
        data_dir=base,
        database_url=f"postgresql+psycopg://recur@127.0.0.1:{ports['postgres']}/recur",
        temporal_address=f"127.0.0.1:{ports['temporal']}",
        stripe_api_base=f"http://127.0.0.1:{ports['stripe']}",
        smtp_url=f"smtp://127.0.0.1:{ports['smtp']}",
        task_queue="recur-faults",
        admin_key=ADMIN_KEY,
        log_json=True,
        log_level="WARNING",
    )
    proxy = await StripeProxy("127.0.0.1", ports["stripe"]).start(ports["proxy"])
    stack = FaultStack(base=base, settings=settings, ports=ports, proxy=proxy)
    stack.api_url = f"http://127.0.0.1:{ports['api']}"
    stack.procs = {
        "postgres": Proc("postgres", stack._postgres),
        "temporal": Proc("temporal", stack._temporal),
        "localstripe": Proc(
            "localstripe",
            lambda: start_localstripe(port=ports["stripe"], log_path=base / "localstripe.log"),
        ),
        "smtp": Proc(
            "smtp",
            lambda: start_smtp_sink(
                port=ports["smtp"], maildir=base / "mail", log_path=base / "smtp.log"
            ),
        ),
        "worker": Proc("worker", stack._worker),
        "api": Proc("api", stack._api),
    }
    try:
        await asyncio.gather(
            *(
                asyncio.to_thread(stack.procs[name].start)
                for name in ("postgres", "temporal", "localstripe", "smtp")
            )
        )
        await asyncio.to_thread(upgrade, settings.effective_database_url)
        engine = create_async_engine(settings.effective_database_url, poolclass=NullPool)
        await ensure_admin_key(engine, ADMIN_KEY)
        await engine.dispose()
        await asyncio.gather(
            asyncio.to_thread(stack.procs["worker"].start),
            asyncio.to_thread(stack.procs["api"].start),
        )
        stack.temporal = await connect_temporal(settings)
    except BaseException:
        stack.stop()
        await proxy.close()
        raise
    return stack


def elapsed(since: float) -> str:
    return f"{time.monotonic() - since:.1f}s"
