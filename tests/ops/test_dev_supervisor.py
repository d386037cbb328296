"""The real `recur dev` on free ports: a worker killed with `kill -9` is started again while
PostgreSQL and Temporal stay up; `--infra-only` starts no worker and no API, and an API run
by hand with the environment it prints serves, and can be killed, without the stack minding.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devstack.process import free_port, port_open
from devstack.restarts import Backoff
from tests.helpers import eventually_blocking

RECUR = str(Path(sys.executable).parent / "recur")
STARTUP_SECONDS = 180  # two cores shared by several test runs: PostgreSQL's initdb, Temporal


@dataclass
class Dev:
    process: subprocess.Popen[bytes]
    out_path: Path
    data_dir: Path
    env: dict[str, str]
    api_port: int
    pg_port: int
    temporal_port: int

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        def said() -> re.Match[str] | None:
            if self.process.poll() is not None:
                raise RuntimeError(f"recur dev exited:\n{self.out()}")
            return re.search(pattern, self.out())

        try:
            found = eventually_blocking(said, timeout=timeout, what=repr(pattern))
        except AssertionError as err:
            raise AssertionError(f"{err}\n{self.out()}") from None
        assert found is not None
        return found


def _children(parent: int) -> dict[int, str]:
    """The live child processes of `parent` and their command lines (from /proc)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def _one(children: dict[int, str], match: Callable[[str], bool]) -> int:
    pids = [pid for pid, cmd in children.items() if match(cmd)]
    assert len(pids) == 1, children
    return pids[0]


@pytest.fixture
def start_dev(tmp_path: Path, repo_root: Path) -> Iterator[Callable[..., Dev]]:
    started: list[Dev] = []

    def start(*args: str) -> Dev:
        ports = {name: free_port() for name in ("pg", "temporal", "ui", "stripe", "smtp", "api")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECUR_")}
        env.update(
            RECUR_DATA_DIR=str(tmp_path / "data"),
            RECUR_PG_PORT=str(ports["pg"]),
            RECUR_TEMPORAL_ADDRESS=f"127.0.0.1:{ports['temporal']}",
            RECUR_TEMPORAL_UI_PORT=str(ports["ui"]),
            RECUR_STRIPE_PORT=str(ports["stripe"]),
            RECUR_SMTP_PORT=str(ports["smtp"]),
            RECUR_API_PORT=str(ports["api"]),
            RECUR_WORKER_METRICS_PORT="0",
            RECUR_LOG_LEVEL="WARNING",
        )
        out_path = tmp_path / "dev.out"
        with out_path.open("wb") as out:
            process = subprocess.Popen(
                [RECUR, "dev", *args],
                env=env,
                cwd=repo_root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        dev = Dev(
            process,
            out_path,
            tmp_path / "data",
            env,
            ports["api"],
            ports["pg"],
            ports["temporal"],
        )
        started.append(dev)
        return dev

    yield start
    for dev in started:
        if dev.process.poll() is None:
            dev.process.send_signal(signal.SIGTERM)
            try:
                dev.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                dev.process.kill()
                dev.process.wait()


def _stop(dev: Dev) -> None:
    children = _children(dev.process.pid)
    dev.process.send_signal(signal.SIGTERM)
    assert dev.process.wait(timeout=60) == 0, dev.out()
    assert not [pid for pid in children if _alive(pid)], "every child stopped"


def test_a_killed_worker_is_started_again_and_the_infrastructure_stays_up(
    start_dev: Callable[..., Dev],
) -> None:
    dev = start_dev()
    dev.wait_for(r"Recur is up", timeout=STARTUP_SECONDS)
    # The next step follows (issue #22, finding 5): the key to export, a request, the README.
    dev.wait_for(r"try: the README's walkthrough")
    assert re.search(r"export RECUR_ADMIN_KEY=rk_dev_\w+", dev.out()), dev.out()
    assert f"http://127.0.0.1:{dev.api_port}/v1/plans" in dev.out()
    children = _children(dev.process.pid)
    worker = _one(children, lambda cmd: "-m worker" in cmd)
    postgres = _one(children, lambda cmd: "postgres -D" in cmd)
    temporal = _one(children, lambda cmd: "start-dev" in cmd)

    os.kill(worker, signal.SIGKILL)
    said = dev.wait_for(
        rf"worker \(pid {worker}\) was killed by SIGKILL after \d+ s; restarting in 1 s"
    )
    restarted = int(dev.wait_for(r"worker started again \(pid (\d+)\)").group(1))
    assert restarted != worker
    worker_log = (dev.data_dir / "logs" / "worker.log").read_text()
    assert said.group(0) in worker_log, "the restart is in the worker's log too"

    # The restarted worker, the only one, serves: a subscription charged at creation is
    # answered by its workflow.
    key = re.search(r"export RECUR_ADMIN_KEY=(\S+)", dev.out())
    assert key is not None
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{dev.api_port}",
        headers={"Authorization": f"Bearer {key.group(1)}"},
        timeout=60,
    )
    with api:
        customer = api.post(
            "/v1/customers",
            json={"email": "fan@example.com", "name": "A Fan", "payment_method": "pm_card_visa"},
        )
        assert customer.status_code == 201, customer.text
        sub = api.post(
            "/v1/subscriptions",
            json={
                "customer_id": customer.json()["id"],
                "plan_id": "plan_demo_supporter",
                "trial_days": 0,  # charged now, by the workflow, not a trial the API records
            },
        )
        assert sub.status_code == 201, sub.text
        assert sub.json()["status"] == "active"
    children = _children(dev.process.pid)
    assert _one(children, lambda cmd: "-m worker" in cmd) == restarted
    assert _alive(restarted)
    assert dev.process.poll() is None, "recur dev itself is still running"
    assert _alive(postgres) and port_open("127.0.0.1", dev.pg_port), "PostgreSQL stayed up"
    assert _alive(temporal) and port_open("127.0.0.1", dev.temporal_port), "Temporal stayed up"
    assert postgres in children and temporal in children, "the same processes, not restarted"
    assert f"worker pid {worker}," in dev.out(), "the console names the pids to kill"
    health = httpx.get(f"http://127.0.0.1:{dev.api_port}/healthz", timeout=10)
    assert health.status_code == 200
    _stop(dev)


def test_infra_only_starts_no_worker_or_api_and_one_can_be_run_by_hand(
    start_dev: Callable[..., Dev],
) -> None:
    dev = start_dev("--infra-only")
    dev.wait_for(r"Infrastructure is up", timeout=STARTUP_SECONDS)
    # The last line of what --infra-only says, printed where the whole stack would start
    # its worker and API: from here on nothing starts them.
    dev.wait_for(r"Ctrl-C stops everything")
    children = _children(dev.process.pid)
    assert not [cmd for cmd in children.values() if "-m worker" in cmd or "cli api" in cmd]
    assert len(children) == 4, children  # PostgreSQL, Temporal, localstripe, SMTP sink
    assert not port_open("127.0.0.1", dev.api_port), "no API"

    # A second `recur dev` in the same clone refuses at once, naming the first one
    # (issue #22, finding 5); the running stack does not notice.
    second = subprocess.run(
        [RECUR, "dev", "--infra-only"], env=dev.env, capture_output=True, text=True, timeout=60
    )
    said = second.stdout + second.stderr
    assert second.returncode != 0, said
    assert f"the data dir {dev.data_dir.resolve()} is in use by another `recur dev` " in said
    assert f"(pid {dev.process.pid})" in said and f"kill {dev.process.pid}" in said
    assert f"PostgreSQL port {dev.pg_port} is in use (set RECUR_PG_PORT)" in said
    assert "Infrastructure is up" not in said and "PostgreSQL      " not in said
    assert _children(dev.process.pid).keys() == children.keys()

    exports = dict(re.findall(r"export (RECUR_\w+)=(\S+)", dev.out()))
    for name in ("RECUR_DATABASE_URL", "RECUR_TEMPORAL_ADDRESS", "RECUR_STRIPE_API_BASE"):
        assert name in exports, dev.out()
    assert exports["RECUR_API_PORT"] == str(dev.api_port)
    by_hand = {k: v for k, v in os.environ.items() if not k.startswith("RECUR_")}
    by_hand.update(exports, RECUR_LOG_LEVEL="WARNING")
    api = subprocess.Popen(
        [RECUR, "api"], env=by_hand, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def listening() -> bool:
            if api.poll() is not None:
                raise RuntimeError("the API run by hand exited")
            return port_open("127.0.0.1", dev.api_port)

        eventually_blocking(listening, timeout=60, what="the API run by hand listening")
        plans = httpx.get(
            f"http://127.0.0.1:{dev.api_port}/v1/plans",
            headers={"Authorization": f"Bearer {exports['RECUR_ADMIN_KEY']}"},
            timeout=30,
        )
        assert plans.status_code == 200, plans.text
        assert "plan_demo_insider" in plans.text, "the API reads the seeded database"
    finally:
        api.kill()
        api.wait()
    # The stack does not watch what was run by hand, so nothing reacts to its end: the next
    # step shows it, as the stack's next look at its children finds only the SMTP sink dead.
    assert dev.process.poll() is None, "killing a process run by hand leaves the stack up"
    assert _children(dev.process.pid).keys() == children.keys()

    # An infrastructure child that dies stops the stack, saying which and why.
    smtp = _one(children, lambda cmd: "devstack.smtp_sink" in cmd)
    os.kill(smtp, signal.SIGKILL)
    assert dev.process.wait(timeout=60) == 1
    assert re.search(r"smtp was killed by SIGKILL after \d+ s\. The stack cannot run", dev.out())
    assert dev.out().count("The stack cannot run") == 1, "stopped for the SMTP sink alone"
    assert not [pid for pid in children if _alive(pid)], "every child stopped"


def test_the_restart_delay_doubles_to_30_s_and_starts_over_after_a_stable_minute() -> None:
    backoff = Backoff()
    delays: list[float] = []
    previous: float | None = None
    for _ in range(7):  # crashing again within seconds of each start
        previous = backoff.delay(previous, ran_for=2.0)
        delays.append(previous)
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.delay(30, ran_for=61.0) == 1, "a minute up: the next crash waits 1 s again"
