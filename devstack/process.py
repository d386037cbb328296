"""Child-process plumbing shared by every embedded service."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def venv_binary(name: str) -> str:
    """A console script installed next to the running interpreter, else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found; run `make dev` so the venv installs it")
    return found


def free_port() -> int:
    """A TCP port nobody listens on right now (for tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll `check` until it holds; raise with `what` in the message when it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Child:
    """One supervised process, its log file, and how to stop it."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    user: str | None = None
    cwd: Path | None = None
    stop_signal: int = signal.SIGTERM
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)
    # Where this run's output starts in the log: `tail` shows this run, not an old one's.
    _log_start: int = field(default=0, init=False)

    def start(self) -> Child:
        """Start the process (again, after it exited: its log file is appended to)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log is not None:
            self._log.close()
        self._log = self.log_path.open("ab")
        self._log_start = self._log.tell()
        env = {**os.environ, **(self.env or {})}
        self.process = subprocess.Popen(
            list(self.argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            # Drop the group too: with root's gid the server could not enter
            # root-group directories that only "others" may traverse.
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user else None,
            cwd=self.cwd,
            # Own process group: Ctrl-C in the terminal reaches only the supervisor,
            # which then stops children in order instead of all at once.
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def exit_description(self) -> str:
        """How the process ended: "exited with code 1", "was killed by SIGKILL"."""
        code = self.process.poll() if self.process is not None else None
        if code is None:
            return "is running"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"

    def note(self, line: str) -> None:
        """Append a line of the supervisor's to this child's log (where its output goes)."""
        if self._log is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self._log.write(f"[recur dev {stamp}] {line}\n".encode())
            self._log.flush()

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self.process.send_signal(self.stop_signal)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 40) -> str:
        """The last `lines` lines this run of the process wrote to its log."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_start)
                text = log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def ensure_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited early; last log lines:\n{self.tail()}")
