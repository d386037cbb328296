"""The worker and API processes run on the event loop RECUR_EVENT_LOOP names."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from pydantic import ValidationError

from config import Settings, run_loop


def _loop_of(settings: Settings) -> type[asyncio.AbstractEventLoop]:
    seen: list[type[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()))

    run_loop(main(), settings)
    return seen[0]


def test_uvloop_by_default() -> None:
    assert Settings().event_loop == "uvloop"
    assert issubclass(_loop_of(Settings()), uvloop.Loop)


def test_run_loop_returns_what_main_returns() -> None:
    async def main() -> int:
        return 7

    assert run_loop(main(), Settings()) == 7


def test_the_standard_loop_on_request() -> None:
    loop = _loop_of(Settings(event_loop="asyncio"))
    assert not issubclass(loop, uvloop.Loop)
    assert loop.__module__.startswith("asyncio")


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(event_loop="trio")  # type: ignore[arg-type]
