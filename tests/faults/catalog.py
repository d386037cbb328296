"""Every fault scenario by name: what bench/faults.py runs and tests/faults tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.faults import scenarios, usage_scenarios
from tests.faults.harness import FaultStack
from tests.faults.scenarios import Backend, Report

SCENARIOS: dict[str, Callable[[FaultStack, Backend, int], Awaitable[Report]]] = {
    **scenarios.SCENARIOS,
    "usage_storm_worker_kill": usage_scenarios.usage_storm_worker_kill,
}
