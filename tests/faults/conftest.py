"""One fault stack for the module (`tests.faults.harness`), a fresh backend per test.

The stack is the module's own (never the session's of tests/conftest.py): its processes
get killed. Each scenario builds its own subscriptions on its own test clock, so one
scenario's leftovers cannot pass or fail another's audit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.faults.harness import FaultStack, start_fault_stack
from tests.faults.scenarios import Backend, Journal


@pytest.fixture(scope="module")
async def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FaultStack]:
    stack = await start_fault_stack(tmp_path_factory.mktemp("faults"))
    stop = asyncio.Event()
    supervisor = asyncio.create_task(stack.supervise(stop))
    try:
        yield stack
    finally:
        stop.set()
        await asyncio.gather(supervisor, return_exceptions=True)
        await asyncio.to_thread(stack.stop)
        await stack.proxy.close()


@pytest.fixture
async def backend(fault_stack: FaultStack) -> AsyncIterator[Backend]:
    async with fault_stack.api_client() as http:
        yield Backend(http, Journal())
