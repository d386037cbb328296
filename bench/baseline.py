"""The bare baselines: the least a Temporal workflow can do for a "renewal" or a "start".

`BareRenewalWorkflow` waits for a `tick` update, runs one no-op activity, and answers the
update once the activity is done: the floor under one Recur renewal (which is an
`advance_clock` update, a charge, a projection and a continue-as-new).
`TrivialWorkflow` returns at once: the floor under `POST /v1/subscriptions`.

Kept free of Recur imports so the sandbox loads nothing but temporalio for them.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

BARE_TASK_QUEUE = "bench-bare"


@activity.defn(name="bench_noop")
async def bench_noop(n: int) -> int:
    return n


@workflow.defn(name="BenchBareRenewal")
class BareRenewalWorkflow:
    def __init__(self) -> None:
        self._ticks = 0
        self._done = 0

    @workflow.run
    async def run(self) -> None:
        while True:
            await workflow.wait_condition(lambda: self._ticks > self._done)
            await workflow.execute_activity(
                bench_noop, self._done, start_to_close_timeout=timedelta(seconds=60)
            )
            self._done += 1

    @workflow.update
    async def tick(self) -> int:
        self._ticks += 1
        target = self._ticks
        await workflow.wait_condition(lambda: self._done >= target)
        return target


@workflow.defn(name="BenchTrivial")
class TrivialWorkflow:
    @workflow.run
    async def run(self) -> str:
        return "ok"

    @workflow.update
    async def first(self) -> str:
        return "ok"
