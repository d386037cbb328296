"""Issue #17's fault-injection suite, small enough for `make test` (N = 20 per storm).

Each test runs one scenario of `tests.faults.scenarios` against real processes (worker,
API, PostgreSQL, Temporal, localstripe) and fails with the audit's report: which
subscription, its invoices and attempt rows, its PaymentIntents in localstripe, its
workflow's state. bench/faults.py runs the same scenarios with larger N.

    .venv/bin/pytest tests/faults -q -x -k storm_worker_kill
"""

from __future__ import annotations

import pytest

from tests.faults import scenarios
from tests.faults.harness import FaultStack
from tests.faults.scenarios import Backend, Report

N = 20  # subscriptions per renewal storm
N_UPDATES = 10  # upgrades / support retries at once


def _check(report: Report) -> None:
    print(report.text())
    assert report.ok, report.text()


async def test_storm_worker_kill(fault_stack: FaultStack, backend: Backend) -> None:
    """kill -9 of the worker, three times, while the storm's charges are at Stripe."""
    _check(await scenarios.storm_worker_kill(fault_stack, backend, N))


async def test_storm_postgres_kill(fault_stack: FaultStack, backend: Backend) -> None:
    """kill -9 of PostgreSQL (every backend with it) mid-storm, restarted 2 s later."""
    _check(await scenarios.storm_postgres_kill(fault_stack, backend, N))


async def test_storm_temporal_kill(fault_stack: FaultStack, backend: Backend) -> None:
    """kill -9 of the Temporal server mid-storm, restarted on its SQLite file 1 s later."""
    _check(await scenarios.storm_temporal_kill(fault_stack, backend, N))


async def test_storm_stripe_faults(fault_stack: FaultStack, backend: Backend) -> None:
    """Connections to Stripe delayed, dropped before the request and after the charge."""
    _check(await scenarios.storm_stripe_faults(fault_stack, backend, N))


async def test_upgrade_worker_kill(fault_stack: FaultStack, backend: Backend) -> None:
    """Upgrades charged at once, the worker killed while the charges are at Stripe."""
    _check(await scenarios.upgrade_worker_kill(fault_stack, backend, N_UPDATES))


async def test_retry_payment_worker_kill(fault_stack: FaultStack, backend: Backend) -> None:
    """Support retries of past-due renewals, the worker killed mid-charge."""
    _check(await scenarios.retry_payment_worker_kill(fault_stack, backend, N_UPDATES))


def test_scenarios_are_all_tested() -> None:
    """bench/faults.py runs `SCENARIOS`; each has its test here."""
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert set(scenarios.SCENARIOS) <= tested


pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
