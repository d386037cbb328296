"""Run localstripe without its on-disk store.

Stock localstripe pickles its whole store to a fixed /tmp path after every write: shared
by every instance (dev and tests would see each other's data) and slower as it grows.
Recur's embedded Stripe is in-memory only; restart it to start empty.
"""

from __future__ import annotations

import sys

from localstripe import resources


def main() -> None:
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None
    from localstripe.server import start

    sys.argv = ["localstripe", *sys.argv[1:]]
    start()


if __name__ == "__main__":
    main()
