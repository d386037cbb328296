"""localstripe: a stateful fake of the Stripe API that the real `stripe` SDK talks to."""

from __future__ import annotations

import sys
from pathlib import Path

from devstack.process import Child, port_open, wait_until


def start_localstripe(
    *, port: int, log_path: Path, store: Path | None = None, host: str = "127.0.0.1"
) -> Child:
    """Start localstripe on `host` (loopback only by default); `store` keeps its data
    across restarts (None: memory only)."""
    argv = [
        sys.executable, "-m", "devstack.localstripe_server",
        "--host", host, "--port", str(port),
    ]  # fmt: skip
    if store is not None:
        argv += ["--store", str(store)]
    child = Child("localstripe", argv, log_path)
    child.start()

    def ready() -> bool:
        child.ensure_alive()
        return port_open("127.0.0.1", port)

    wait_until(ready, "localstripe")
    return child
