"""A loop that every API process runs in the background: a sweep every `interval` seconds."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

log = structlog.get_logger()


class Periodic:
    """Subclasses implement `sweep`; a failed sweep is logged and the next one runs."""

    name = "periodic"

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sweep()
            except Exception:
                log.exception(f"{self.name}.failed")

    async def sweep(self) -> int:
        raise NotImplementedError
