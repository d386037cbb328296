"""Usage billed in arrears under faults: the same invoice never counts usage twice.

`usage_storm_worker_kill`: `n` subscriptions of a licensed seat and a metered plan on one
test clock, each with its own number of events; one advance of the clock past the period
end and the usage grace renews them all, each renewal invoice pricing its period's usage
(the `usage_lines` activity claims and closes the aggregate, then the charge), while the
worker is killed with -9 each time Stripe has answered one of its charges. The audit then
requires, per subscription, the invoice totals the events make (seat + usage, each
invoice paid once) besides everything the renewal storms require.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from tests.faults.audit import Expected
from tests.faults.harness import FaultStack
from tests.faults.scenarios import (
    ADVANCE_TIMEOUT,
    MONTH_LATER,
    RENEWED,
    STORM_STRIPE_HOLD,
    Backend,
    Report,
    _finish,
    _run_with_fault,
    kill_after_stripe_answers,
    populate,
)

SEAT, PER_CALL = 1000, 10
GRACE = timedelta(seconds=3600)  # RECUR_USAGE_GRACE_SECONDS of the fault stack (default)


def calls_of(i: int) -> int:
    """How many metered calls the i-th subscription's customer makes (1 to 5)."""
    return i % 5 + 1


async def usage_storm_worker_kill(
    stack: FaultStack, backend: Backend, n: int, kills: int = 3
) -> Report:
    report = Report("usage_storm_worker_kill", n, journal=backend.journal)
    name = f"fault_call_{uuid.uuid4().hex[:8]}"
    meter = await backend.ok(
        "POST", "/v1/meters", {"name": "Calls", "event_name": name, "aggregation": "count"}, 201
    )
    metered = await backend.ok(
        "POST",
        "/v1/plans",
        {"name": f"Calls {name}", "amount": PER_CALL, "currency": "usd", "interval": "month",
         "usage_type": "metered", "meter_id": meter["id"]},
        201,
    )  # fmt: skip
    pop = await populate(backend, n, amount=SEAT, extra_items=[metered["id"]])
    events = [
        {"transaction_id": f"{sub['id']}-{k}", "customer_id": sub["customer_id"],
         "event_name": name, "properties": {}}
        for i, sub in enumerate(pop.subs)
        for k in range(calls_of(i))
    ]  # fmt: skip
    for start in range(0, len(events), 1000):
        answer = await backend.ok(
            "POST", "/v1/usage_events/batch", {"events": events[start : start + 1000]}, 202
        )
        assert answer["rejected"] == [], answer

    clock_id = pop.clock["id"]
    due = MONTH_LATER + GRACE + timedelta(seconds=1)
    advance = backend.call(
        "POST",
        f"/v1/test_clocks/{clock_id}/advance",
        {"frozen_time": due.isoformat()},
        within=150,
        per_try=ADVANCE_TIMEOUT,
    )
    fault = kill_after_stripe_answers("worker", kills)
    reply = await _run_with_fault(stack, report, STORM_STRIPE_HOLD, fault, advance)
    if reply is None or reply.status_code != 200:
        answer_text = "none" if reply is None else f"{reply.status_code} {reply.text[:300]}"
        report.errors.append(f"the advance's final answer: {answer_text}")
    expected = [
        Expected(
            sub["id"],
            sub["customer_id"],
            pop.plan["id"],
            MONTH_LATER,
            RENEWED,
            totals=[SEAT, SEAT + PER_CALL * calls_of(i)],
        )
        for i, sub in enumerate(pop.subs)
    ]
    return await _finish(stack, report, expected, (clock_id, due), None)
