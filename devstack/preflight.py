"""Before `recur dev` starts anything: is another stack already using this data dir or
these ports? Answer with everything in use and what to do, instead of starting half a
stack that then fails on PostgreSQL's lock file.

The data dir is claimed with an advisory lock (`recur-dev.lock`, holding the owner's pid):
the kernel drops it when that process ends, however it ends, so a crash leaves no stale
claim. A PostgreSQL still running from a killed `recur dev` is found by its
`postmaster.pid`; a port by trying to bind it.
"""

from __future__ import annotations

import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from config import Settings

LOCK_NAME = "recur-dev.lock"


@dataclass(frozen=True)
class Port:
    what: str
    port: int
    variable: str


class StackInUse(Exception):
    """Another stack holds the data dir or a port; the message says which and what to do."""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on `port` (a bind fails), whether on loopback or all."""
    with socket.socket() as sock:
        # Without SO_REUSEADDR a port in TIME_WAIT from a stack just stopped looks busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def ports_to_claim(settings: Settings, *, infra_only: bool, temporal_reused: bool) -> list[Port]:
    """The ports this `recur dev` will listen on, given what it starts."""
    ports: list[Port] = []
    if settings.database_url is None:
        ports.append(Port("PostgreSQL", settings.pg_port, "RECUR_PG_PORT"))
    if not temporal_reused:
        _, _, temporal_port = settings.temporal_address.rpartition(":")
        ports.append(Port("Temporal", int(temporal_port), "RECUR_TEMPORAL_ADDRESS"))
        ports.append(Port("Temporal UI", settings.temporal_ui_port, "RECUR_TEMPORAL_UI_PORT"))
    if settings.uses_localstripe and settings.stripe_api_base is None:
        ports.append(Port("localstripe", settings.stripe_port, "RECUR_STRIPE_PORT"))
    if settings.smtp_url is None:
        ports.append(Port("SMTP sink", settings.smtp_port, "RECUR_SMTP_PORT"))
    if not infra_only:
        ports.append(Port("API", settings.api_port, "RECUR_API_PORT"))
        if settings.worker_metrics_port:
            ports.append(
                Port("worker metrics", settings.worker_metrics_port, "RECUR_WORKER_METRICS_PORT")
            )
    return ports


def _postgres_pid(pgdata: Path) -> int | None:
    """The pid of a live PostgreSQL that owns `pgdata` (its postmaster.pid), else None."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"postgres" in cmdline else None


class DataDirLock:
    """The claim on a data dir, held for as long as this `recur dev` runs."""

    def __init__(self, data: Path) -> None:
        self.path = data / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> int | None:
        """Take the lock; None on success, else the pid of the `recur dev` holding it."""
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip()
            handle.close()
            return int(owner) if owner.isdigit() else -1
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None


def check(settings: Settings, data: Path, ports: list[Port], lock: DataDirLock) -> None:
    """Take the data dir's lock and check every port; raise StackInUse naming all that is
    in use (the lock is released again then)."""
    problems: list[str] = []
    owner = lock.acquire()
    if owner is not None:
        who = f"pid {owner}" if owner > 0 else "another process"
        problems.append(f"the data dir {data} is in use by another `recur dev` ({who})")
    elif settings.database_url is None:
        pg_pid = _postgres_pid(data / "postgres")
        if pg_pid is not None:
            problems.append(
                f"a PostgreSQL (pid {pg_pid}) still runs on {data / 'postgres'} "
                f"(left by a `recur dev` that did not stop cleanly: kill {pg_pid})"
            )
    for port in ports:
        if port_in_use(port.port):
            problems.append(f"{port.what} port {port.port} is in use (set {port.variable})")
    if not problems:
        return
    lock.release()
    raise StackInUse(
        "recur dev: not starting, another stack is running here:\n"
        + "".join(f"  - {p}\n" for p in problems)
        + "Stop the other `make dev` (Ctrl-C in its terminal"
        + (f", or `kill {owner}`" if owner and owner > 0 else "")
        + "), or give this one its own data dir and ports: RECUR_DATA_DIR, "
        + ", ".join(sorted({p.variable for p in ports}))
        + " (README, Configuration)."
    )
