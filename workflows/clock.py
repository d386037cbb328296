"""The one place a subscription waits for time.

A subscription on a test clock reads "now" from that clock, which only moves when the
API advances it; otherwise "now" is `workflow.now()` and waiting is a durable timer.
Every wait also ends early when `wake()` holds, so updates can reschedule the lifecycle.

On a test clock "now" is the time the workflow has caught up to: when one advance
crosses several due dates, each step runs at its own due time (a renewal on Feb 29 is
invoiced on Feb 29, and dunning counts from then), exactly as if the time had passed.

For test clocks the helper also tracks whether the workflow has caught up with the
latest advance: `idle_epoch` is the clock epoch at which the workflow last had nothing
left to do before the clock's time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from temporalio import workflow


class WorkflowClock:
    def __init__(
        self, test_clock_id: str | None, test_now: datetime | None, cursor: datetime | None = None
    ) -> None:
        self.test_clock_id = test_clock_id
        self._test_now = test_now
        self._cursor = cursor or test_now
        self.epoch = 0
        self.idle_epoch = -1

    @property
    def is_test_clock(self) -> bool:
        return self.test_clock_id is not None

    def now(self) -> datetime:
        if self.test_clock_id is not None and self._cursor is not None:
            return self._cursor
        return workflow.now()

    @property
    def test_now(self) -> datetime | None:
        return self._test_now

    @property
    def cursor(self) -> datetime | None:
        return self._cursor

    def advance(self, to: datetime) -> int:
        """Move the test clock forward (never back); returns the epoch to wait for."""
        if self._test_now is None or to > self._test_now:
            self._test_now = to
        self.epoch += 1
        return self.epoch

    def caught_up(self, epoch: int) -> bool:
        return self.idle_epoch >= epoch

    async def wait(self, until: datetime | None, wake: Callable[[], bool]) -> bool:
        """Wait until `until` (None: only for `wake`). True if `wake()` ended the wait."""
        if self.is_test_clock:
            return await self._wait_on_test_clock(until, wake)
        if wake():
            return True
        if until is None:
            await workflow.wait_condition(wake)
            return True
        remaining = until - workflow.now()
        if remaining.total_seconds() <= 0:
            return False
        try:
            await workflow.wait_condition(wake, timeout=remaining)
        except TimeoutError:
            return False
        return True

    async def _wait_on_test_clock(self, until: datetime | None, wake: Callable[[], bool]) -> bool:
        while True:
            if wake():
                return True
            assert self._test_now is not None
            if until is not None and self._test_now >= until:
                self._cursor = max(until, self._cursor or until)
                return False
            # Nothing is due before the clock's time: this is "caught up".
            self._cursor = self._test_now
            seen = self.epoch
            self.idle_epoch = seen
            await workflow.wait_condition(lambda seen=seen: wake() or self.epoch != seen)  # type: ignore[misc]
