"""Issue #17's fault-injection suite, small enough for `make test` (N = 20 per storm).

Each test runs one scenario of `tests.faults.scenarios` against real processes (worker,
API, PostgreSQL, Temporal, localstripe) and fails with the audit's report: which
subscription, its invoices and attempt rows, its PaymentIntents in localstripe, its
workflow's state. bench/faults.py runs the same scenarios with larger N.

    .venv/bin/pytest tests/faults -q -x -k storm_worker_kill
"""

from __future__ import annotations

import asyncio

import pytest
import stripe

from tests.faults import catalog, scenarios, usage_scenarios
from tests.faults.audit import audit
from tests.faults.harness import FaultStack
from tests.faults.scenarios import Backend, Report

N = 20  # subscriptions per renewal storm
N_UPDATES = 10  # upgrades / support retries at once


def _check(report: Report) -> None:
    """Pass with the run's figures printed (`-s` shows them), or fail with the report."""
    assert report.ok, report.text()
    print(report.text())


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


async def test_usage_storm_worker_kill(fault_stack: FaultStack, backend: Backend) -> None:
    """Renewals that bill usage in arrears, the worker killed while their charges are at
    Stripe: each invoice prices its period's usage once and is charged once."""
    _check(await usage_scenarios.usage_storm_worker_kill(fault_stack, backend, N))


async def test_the_audit_sees_a_double_charge_and_a_missed_renewal(
    fault_stack: FaultStack, backend: Backend
) -> None:
    """The suite can fail: a second PaymentIntent for a paid invoice, an invoice total other
    than expected, a subscription whose renewal never came and a clock never advanced are
    each reported, by subscription."""
    assert fault_stack.temporal is not None
    pop = await scenarios.populate(backend, 2)
    charged, missed = pop.subs
    customer = next(c for c in pop.customers if c["id"] == charged["customer_id"])
    [invoice] = await backend.ok("GET", f"/v1/invoices?subscription_id={charged['id']}")
    client = stripe.StripeClient(
        fault_stack.settings.stripe_api_key,
        base_addresses={"api": fault_stack.settings.effective_stripe_api_base or ""},
    )
    await asyncio.to_thread(
        client.v1.payment_intents.create,
        {
            "amount": invoice["total"],
            "currency": "usd",
            "customer": customer["stripe_customer_id"],
            "payment_method": customer["default_payment_method"],
            "confirm": True,
            "off_session": True,
            "metadata": {
                "recur_subscription_id": charged["id"],
                "recur_invoice_id": invoice["id"],
            },
        },
    )
    expected = scenarios.expect(pop, pop.plan["id"], scenarios.T0, ["subscription_create"])
    expected[0].totals = [invoice["total"] + 1]  # an amount the invoice does not have
    expected[1].period_start = scenarios.MONTH_LATER  # a renewal that never happened
    result = await audit(
        fault_stack.settings,
        fault_stack.temporal,
        expected,
        (pop.clock["id"], scenarios.MONTH_LATER),
    )
    clock, double, never = result.problems
    assert double.startswith(charged["id"])
    assert f"invoice {invoice['id']} has 2 succeeded PaymentIntents" in double
    assert f"invoice totals [{invoice['total']}] (expected [{invoice['total'] + 1}])" in double
    assert never.startswith(missed["id"]) and "period starts 2030-01-01" in never
    assert "its state says period_start 2030-01-01" in never, "the workflow's own state"
    assert clock.startswith(f"test clock {pop.clock['id']}")


def test_scenarios_are_all_tested() -> None:
    """bench/faults.py runs `SCENARIOS`; each has its test here."""
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert set(catalog.SCENARIOS) <= tested


pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
