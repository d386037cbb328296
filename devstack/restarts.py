"""Keeping `recur dev`'s children running.

The worker and the API hold no state of their own: when one dies (a crash, an out-of-memory
kill, a developer's `kill -9`), it is started again after a delay that doubles with each
crash in a row (1 s, 2 s, 4 s ... 30 s) and starts over at 1 s once the child has run for a
minute. The infrastructure children (PostgreSQL, Temporal, localstripe, the SMTP sink) hold
the stack's state: when one of them dies the stack stops, saying which one and showing the
end of its log, rather than starting a database again under a running worker and hiding
whatever killed it (a full disk, a port taken, corrupt data).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from devstack.process import Child


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 30.0
    # A child that ran this long before it died was healthy: its next delay is `initial`.
    stable_after: float = 60.0

    def delay(self, previous: float | None, ran_for: float) -> float:
        """The wait before the next start, after a run of `ran_for` seconds."""
        if previous is None or ran_for >= self.stable_after:
            return self.initial
        return min(previous * 2, self.maximum)


@dataclass
class _Watched:
    child: Child
    restart: bool
    started_at: float
    delay: float | None = None  # the last restart's wait
    restart_at: float | None = None  # set while waiting to start it again
    restarts: int = 0


class Supervisor:
    """Looks at every child (`check`, once a second); see the module doc for what it does."""

    def __init__(
        self,
        say: Callable[[str], None],
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._say = say
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._watched: list[_Watched] = []

    def add(self, child: Child, *, restart: bool) -> Child:
        """Watch a started child; `restart`: start it again when it dies, else stop the stack."""
        self._watched.append(_Watched(child, restart, started_at=self._clock()))
        return child

    @property
    def children(self) -> list[Child]:
        """In the order they were added (stop them in reverse)."""
        return [w.child for w in self._watched]

    def check(self) -> str | None:
        """Start again the children whose wait is over, note those that died. Returns why
        the stack must stop (an infrastructure child died), else None."""
        now = self._clock()
        for w in self._watched:
            child = w.child
            if w.restart_at is not None:
                if now >= w.restart_at:
                    w.restart_at = None
                    w.started_at = now
                    child.start()
                    self._tell(child, f"{child.name} started again (pid {child.pid})")
                continue
            if child.alive():
                continue
            how = child.exit_description()
            ran_for = now - w.started_at
            if not w.restart:
                self._say(
                    f"{child.name} {how} after {ran_for:.0f} s. The stack cannot run without "
                    f"it: stopping everything. Last lines of {child.log_path}:"
                )
                self._say(child.tail(20))
                return f"{child.name} {how}"
            w.delay = self._backoff.delay(w.delay, ran_for)
            w.restarts += 1
            w.restart_at = now + w.delay
            self._tell(
                child,
                f"{child.name} (pid {child.pid}) {how} after {ran_for:.0f} s; "
                f"restarting in {w.delay:g} s (restart {w.restarts})",
            )
        return None

    def _tell(self, child: Child, line: str) -> None:
        """On the console and in the child's own log."""
        self._say(line)
        child.note(line)
