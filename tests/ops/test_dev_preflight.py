"""A `recur dev` that would collide with a running stack refuses before it starts anything
(issue #22, finding 5): it names what is in use and what to do, and exits non-zero.
The refusal while a whole `recur dev` runs is in test_dev_supervisor.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.process import free_port
from tests.conftest import Stack

RECUR = str(Path(sys.executable).parent / "recur")


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECUR_")}
    env.update(
        RECUR_DATA_DIR=str(data_dir),
        RECUR_PG_PORT=str(free_port()),
        RECUR_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        RECUR_TEMPORAL_UI_PORT=str(free_port()),
        RECUR_STRIPE_PORT=str(free_port()),
        RECUR_SMTP_PORT=str(free_port()),
        RECUR_API_PORT=str(free_port()),
        RECUR_WORKER_METRICS_PORT=str(free_port()),
        RECUR_LOG_LEVEL="WARNING",
    )
    return env


def _dev(env: dict[str, str], repo_root: Path) -> subprocess.CompletedProcess[str]:
    # Refusing takes well under a second; starting a stack takes far longer than this.
    return subprocess.run(
        [RECUR, "dev"], env=env, cwd=repo_root, capture_output=True, text=True, timeout=60
    )


def test_a_port_in_use_is_named_with_its_variable_and_nothing_starts(
    tmp_path: Path, repo_root: Path
) -> None:
    env = _env(tmp_path / "data")
    with socket.socket() as taken_api, socket.socket() as taken_smtp:
        taken_api.bind(("127.0.0.1", int(env["RECUR_API_PORT"])))
        taken_api.listen()
        taken_smtp.bind(("0.0.0.0", int(env["RECUR_SMTP_PORT"])))
        taken_smtp.listen()
        result = _dev(env, repo_root)
    said = result.stdout + result.stderr
    assert result.returncode != 0, said
    assert f"API port {env['RECUR_API_PORT']} is in use (set RECUR_API_PORT)" in said
    assert f"SMTP sink port {env['RECUR_SMTP_PORT']} is in use (set RECUR_SMTP_PORT)" in said
    assert "Stop the other `make dev`" in said and "RECUR_DATA_DIR" in said
    assert "PostgreSQL      " not in said, "nothing was started"
    assert not (tmp_path / "data" / "postgres").exists(), "not even initdb ran"


def test_a_postgresql_still_running_on_the_data_dir_is_named_with_its_pid(
    tmp_path: Path, repo_root: Path, stack: Stack
) -> None:
    """A `recur dev` killed with -9 leaves its PostgreSQL running: the next one says so
    instead of failing on PostgreSQL's lock file with an old log."""
    postgres = stack.children[0]
    pgdata = Path(postgres.argv[list(postgres.argv).index("-D") + 1])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "postgres").symlink_to(pgdata)
    result = _dev(_env(tmp_path / "data"), repo_root)
    said = result.stdout + result.stderr
    assert result.returncode != 0, said
    assert f"a PostgreSQL (pid {postgres.pid}) still runs on" in said, said
    assert f"kill {postgres.pid}" in said
    assert "Recur is up" not in said and "Traceback" not in said


def test_a_child_that_exits_early_shows_this_runs_log_not_an_old_one(tmp_path: Path) -> None:
    from devstack.process import Child

    log = tmp_path / "postgres.log"
    log.write_text("FATAL: lock file exists (a line from yesterday's run)\n")
    child = Child("postgres", [sys.executable, "-c", "print('today')"], log).start()
    assert child.process is not None
    child.process.wait(timeout=30)
    with pytest.raises(RuntimeError) as exited:
        child.ensure_alive()
    child.stop()
    said = str(exited.value)
    assert "today" in said and "yesterday" not in said, said
