"""Run localstripe with its store where Recur wants it.

Stock localstripe pickles its whole store to a fixed /tmp path after every write: shared
by every instance (dev and tests would see each other's data) and slower as it grows.
Here the store lives in memory; with `--store PATH` (what `recur dev` passes, under
.data/) it is loaded from PATH at start and written back at most once a second and at
shutdown, so a second `make dev` still knows the Stripe customers of the first.

Stock localstripe also listens on every interface (`::`); a fake Stripe that takes any
request without a real key must not be reachable from the network, so it is served here
on `--host` (127.0.0.1 unless told otherwise).
"""

from __future__ import annotations

import argparse
import logging
import pickle
import sys
import time
from pathlib import Path
from typing import Any

from localstripe import resources


def _persist_to(path: Path | None) -> None:
    state = {"last": 0.0, "dirty": False}

    def load(store: Any) -> None:
        if path is not None and path.exists():
            store.clear()
            store.update(pickle.loads(path.read_bytes()))

    def dump(store: Any, force: bool = False) -> None:
        if path is None:
            return
        state["dirty"] = True
        now = time.monotonic()
        if force or now - state["last"] >= 1.0:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(pickle.dumps(dict(store), protocol=pickle.HIGHEST_PROTOCOL))
            tmp.replace(path)
            state["last"], state["dirty"] = now, False

    resources.Store.try_load_from_disk = load
    resources.Store.dump_to_disk = dump
    resources.store.try_load_from_disk()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--store", type=Path, default=None)
    args = parser.parse_args()
    _persist_to(args.store)
    from aiohttp import web
    from localstripe.server import app

    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.DEBUG)
    access.addHandler(logging.StreamHandler(sys.stdout))
    try:
        web.run_app(app, host=args.host, port=args.port, access_log=access)
    finally:
        resources.store.dump_to_disk(force=True)


if __name__ == "__main__":
    main()
