"""localstripe for benchmarks: `devstack.localstripe_server` with refunds indexed by charge.

Stock localstripe finds a charge's refunds by scanning its whole store, twice every time it
renders a charge (`Charge.refunds`, `Charge.amount_refunded`), and it renders the charge
of every PaymentIntent it confirms: each charge costs time proportional to everything
stored so far. At 10,000 subscriptions that made localstripe, not Recur, the bottleneck
(most of its CPU in that scan). Here refunds are kept in a dict by charge id; the answers
are the same (benchmarks run it without `--store`, so nothing is loaded from disk).

    python -m bench.localstripe_indexed --port 8420
"""

from __future__ import annotations

from typing import Any

from localstripe import resources

from devstack import localstripe_server


def index_refunds() -> None:
    by_charge: dict[str, list[Any]] = {}
    original_init = resources.Refund.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        by_charge.setdefault(self.charge, []).append(self)

    def refunds(self: Any) -> Any:
        found = resources.List("/v1/charges/" + self.id + "/refunds")
        found._list = sorted(by_charge.get(self.id, []), key=lambda r: r.date, reverse=True)
        return found

    resources.Refund.__init__ = init  # type: ignore[method-assign]
    resources.Charge.refunds = property(refunds)  # type: ignore[method-assign,assignment]


if __name__ == "__main__":
    index_refunds()
    localstripe_server.main()
