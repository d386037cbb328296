"""The end state a fault must not change, checked from every side, with what went wrong.

For each subscription of a scenario: its row (status, plan, period) and its invoices in
PostgreSQL (every invoice paid, the expected billing reasons, one succeeded attempt each,
no attempt left `pending`); its PaymentIntents in localstripe, grouped by the invoice id
in their metadata (exactly one succeeded per paid invoice, for the invoice's total, the
one its attempt records; none for an invoice Recur does not hold as paid); its workflow
in Temporal (running, no workflow task being retried, and its own state, by query, the
same as the row's); the test clock (`ready`, at the time it was advanced to).

A problem names the subscription and shows everything known about it, so a failure says
which customer was charged how often and where the workflow stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import stripe
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from temporalio.client import Client, WorkflowExecutionStatus

from config import Settings
from tests.helpers import eventually
from workflows.messages import workflow_id_for
from workflows.subscription import SubscriptionWorkflow


@dataclass
class Expected:
    """What one subscription must look like once the faults are over."""

    subscription_id: str
    customer_id: str
    plan_id: str
    period_start: datetime
    reasons: list[str]  # billing reasons of its invoices, in order, all paid
    status: str = "active"
    totals: list[int] | None = None  # their totals, in order, when the scenario knows them


@dataclass
class Sub:
    """Everything found about one subscription (for the problem report)."""

    row: dict[str, Any] | None = None
    invoices: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    intents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    workflow: str = "?"

    def describe(self) -> str:
        row = self.row or {}
        lines = [
            f"    row: status={row.get('status')} plan={row.get('plan_id')} "
            f"period_start={row.get('current_period_start')}",
            f"    workflow: {self.workflow}",
        ]
        for inv in self.invoices:
            tries = [
                f"#{a['attempt_number']}:{a['status']}:{a['stripe_payment_intent_id']}"
                for a in self.attempts.get(inv["id"], [])
            ]
            pis = [_pi(p) for p in self.intents.get(inv["id"], [])]
            lines.append(
                f"    invoice {inv['id']} {inv['billing_reason']} {inv['status']} "
                f"total={inv['total']} attempts={tries} stripe={pis}"
            )
        unknown = set(self.intents) - {inv["id"] for inv in self.invoices}
        for invoice_id in sorted(unknown):
            pis = [_pi(p) for p in self.intents[invoice_id]]
            tries = [
                f"#{a['attempt_number']}:{a['status']}" for a in self.attempts.get(invoice_id, [])
            ]
            lines.append(
                f"    invoice {invoice_id} NOT IN RECUR'S INVOICES attempts={tries} stripe={pis}"
            )
        return "\n".join(lines)


def _pi(intent: dict[str, Any]) -> str:
    return f"{intent['id']}:{intent['status']}:{intent['amount']}"


@dataclass
class Audit:
    problems: list[str]
    succeeded_intents: int
    invoices: int

    @property
    def ok(self) -> bool:
        return not self.problems


async def audit(
    settings: Settings,
    temporal: Client,
    expected: list[Expected],
    clock: tuple[str, datetime] | None,
    *,
    query_workflows: bool = True,
) -> Audit:
    ids = [e.subscription_id for e in expected]
    subs: dict[str, Sub] = {i: Sub() for i in ids}
    problems: list[str] = []
    clock_row = await _database(settings, ids, subs, clock[0] if clock else None)
    intents = await asyncio.to_thread(_succeeded_and_failed_intents, settings, set(ids))
    for pi in intents:
        meta = pi["metadata"]
        sub = subs[meta["recur_subscription_id"]]
        sub.intents.setdefault(meta.get("recur_invoice_id", "?"), []).append(pi)
    await _workflows(temporal, expected, subs, query_workflows)

    if clock is not None:
        clock_id, to = clock
        if clock_row is None or clock_row["status"] != "ready" or clock_row["frozen_time"] != to:
            problems.append(f"test clock {clock_id}: {clock_row} (expected ready at {to})")
    for exp in expected:
        found = _problems_of(exp, subs[exp.subscription_id])
        if found:
            problems.append(
                f"{exp.subscription_id} (customer {exp.customer_id}): {'; '.join(found)}\n"
                + subs[exp.subscription_id].describe()
            )
    succeeded = sum(1 for pi in intents if pi["status"] == "succeeded")
    return Audit(problems, succeeded, sum(len(s.invoices) for s in subs.values()))


def _problems_of(exp: Expected, sub: Sub) -> list[str]:
    out: list[str] = []
    row = sub.row
    if row is None:
        return ["no subscription row"]
    if row["status"] != exp.status:
        out.append(f"status {row['status']} (expected {exp.status})")
    if row["plan_id"] != exp.plan_id:
        out.append(f"plan {row['plan_id']} (expected {exp.plan_id})")
    if row["current_period_start"] != exp.period_start:
        out.append(f"period starts {row['current_period_start']} (expected {exp.period_start})")
    reasons = [inv["billing_reason"] for inv in sub.invoices]
    if reasons != exp.reasons:
        out.append(f"invoices {reasons} (expected {exp.reasons})")
    totals = [inv["total"] for inv in sub.invoices]
    if exp.totals is not None and totals != exp.totals:
        out.append(f"invoice totals {totals} (expected {exp.totals})")
    for inv in sub.invoices:
        attempts = sub.attempts.get(inv["id"], [])
        succeeded = [a for a in attempts if a["status"] == "succeeded"]
        pending = [a for a in attempts if a["status"] == "pending"]
        paid_pis = [p for p in sub.intents.get(inv["id"], []) if p["status"] == "succeeded"]
        if inv["status"] != "paid":
            out.append(f"invoice {inv['id']} is {inv['status']}")
        if len(succeeded) != (1 if inv["total"] > 0 else len(succeeded)):
            out.append(f"invoice {inv['id']} has {len(succeeded)} succeeded attempts")
        if pending:
            out.append(f"invoice {inv['id']} has {len(pending)} attempt(s) left pending")
        if inv["total"] > 0 and len(paid_pis) != 1:
            out.append(f"invoice {inv['id']} has {len(paid_pis)} succeeded PaymentIntents")
        if paid_pis and any(p["amount"] != inv["total"] for p in paid_pis):
            out.append(f"invoice {inv['id']} charged {[p['amount'] for p in paid_pis]}")
        recorded = {a["stripe_payment_intent_id"] for a in succeeded}
        if paid_pis and not {p["id"] for p in paid_pis} <= recorded:
            out.append(f"invoice {inv['id']}: a succeeded PaymentIntent no attempt records")
    known = {inv["id"] for inv in sub.invoices}
    for invoice_id, attempts in sub.attempts.items():
        pending = [a for a in attempts if a["status"] == "pending"]
        if invoice_id not in known and pending and invoice_id not in sub.intents:
            out.append(f"{len(pending)} attempt(s) left pending for invoice {invoice_id}")
    for invoice_id, pis in sub.intents.items():
        charged = [p for p in pis if p["status"] == "succeeded"]
        if invoice_id not in known and charged:
            pending = [a for a in sub.attempts.get(invoice_id, []) if a["status"] == "pending"]
            out.append(
                f"CHARGED {len(charged)}x for invoice {invoice_id} that Recur does not hold"
                + (f" (its attempt rows: {len(pending)} pending)" if pending else "")
            )
    if not sub.workflow.startswith("RUNNING ok"):
        out.append(f"workflow {sub.workflow}")
    return out


async def _database(
    settings: Settings, ids: list[str], subs: dict[str, Sub], clock_id: str | None
) -> dict[str, Any] | None:
    engine = create_async_engine(settings.effective_database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            for row in (
                await conn.execute(
                    text(
                        "SELECT id, status, plan_id, current_period_start FROM subscriptions"
                        " WHERE id = ANY(:ids)"
                    ),
                    {"ids": ids},
                )
            ).mappings():
                subs[row["id"]].row = dict(row)
            for row in (
                await conn.execute(
                    text(
                        "SELECT id, subscription_id, status, billing_reason, total FROM invoices"
                        " WHERE subscription_id = ANY(:ids) ORDER BY created_at, id"
                    ),
                    {"ids": ids},
                )
            ).mappings():
                subs[row["subscription_id"]].invoices.append(dict(row))
            for row in (
                await conn.execute(
                    text(
                        "SELECT invoice_id, subscription_id, attempt_number, status,"
                        " stripe_payment_intent_id FROM payment_attempts"
                        " WHERE subscription_id = ANY(:ids) ORDER BY attempt_number"
                    ),
                    {"ids": ids},
                )
            ).mappings():
                subs[row["subscription_id"]].attempts.setdefault(row["invoice_id"], []).append(
                    dict(row)
                )
            if clock_id is None:
                return None
            found = (
                (
                    await conn.execute(
                        text("SELECT status, frozen_time FROM test_clocks WHERE id = :id"),
                        {"id": clock_id},
                    )
                )
                .mappings()
                .first()
            )
            return dict(found) if found else None
    finally:
        await engine.dispose()


def _succeeded_and_failed_intents(settings: Settings, ids: set[str]) -> list[dict[str, Any]]:
    """Every PaymentIntent in localstripe that belongs to one of `ids` (by its metadata)."""
    client = stripe.StripeClient(
        settings.stripe_api_key,
        base_addresses={"api": settings.effective_stripe_api_base or ""},
        max_network_retries=2,
    )
    out: list[dict[str, Any]] = []
    for pi in client.v1.payment_intents.list({"limit": 100}).auto_paging_iter():
        meta = pi.metadata.to_dict() if pi.metadata else {}
        if meta.get("recur_subscription_id") in ids:
            out.append({"id": pi.id, "status": pi.status, "amount": pi.amount, "metadata": meta})
    return out


async def _workflows(
    temporal: Client, expected: list[Expected], subs: dict[str, Sub], query: bool
) -> None:
    gate = asyncio.Semaphore(16)

    async def one(exp: Expected) -> None:
        async with gate:
            subs[exp.subscription_id].workflow = await _workflow_state(temporal, exp, query)

    await asyncio.gather(*(one(e) for e in expected))


async def _workflow_state(temporal: Client, exp: Expected, query: bool) -> str:
    """`RUNNING ok ...` when the workflow runs, no workflow task is being retried and (with
    `query`) its own state matches `exp`; else what is wrong."""
    handle = temporal.get_workflow_handle(workflow_id_for(exp.subscription_id))
    try:
        desc = await asyncio.wait_for(handle.describe(), 10)
    except Exception as err:
        return f"describe failed: {type(err).__name__}: {err}"
    status = desc.status.name if desc.status else "?"
    raw = desc.raw_description
    task = ""
    if raw.HasField("pending_workflow_task"):
        pending = raw.pending_workflow_task
        task = f" pending workflow task attempt {pending.attempt}"
        if pending.attempt > 1:
            return f"{status}{task} (a workflow task keeps failing or timing out)"
    if desc.status != WorkflowExecutionStatus.RUNNING:
        return f"{status} (not running){task}"
    if not query:
        return f"RUNNING ok{task}"
    try:
        view = await asyncio.wait_for(handle.query(SubscriptionWorkflow.state), 10)
    except Exception as err:
        return f"RUNNING query failed: {type(err).__name__}: {err}{task}"
    wrong = []
    if view.status != exp.status:
        wrong.append(f"status {view.status}")
    if view.current_period_start != exp.period_start:
        wrong.append(f"period_start {view.current_period_start}")
    if view.plan_id != exp.plan_id:
        wrong.append(f"plan {view.plan_id}")
    if wrong:
        return f"RUNNING but its state says {', '.join(wrong)}{task}"
    return f"RUNNING ok{task}"


async def settle(
    settings: Settings,
    temporal: Client,
    expected: list[Expected],
    clock: tuple[str, datetime] | None,
    timeout: float,
) -> tuple[Audit, float]:
    """Audit until it passes or `timeout` runs out: the last audit and the seconds taken.
    Each audit has a budget of its own (a minute, more for a large N), so the last one
    still reports what it found however little of `timeout` is left."""
    start = time.monotonic()
    budget = 60 + len(expected) / 2
    last = Audit(["not audited"], 0, 0)

    async def passes() -> bool:
        nonlocal last
        try:
            last = await asyncio.wait_for(audit(settings, temporal, expected, clock), budget)
        except Exception as err:
            last = Audit([f"audit failed: {type(err).__name__}: {err!r}"], 0, 0)
        return last.ok

    # A last audit that still fails is the report, not an error here.
    with contextlib.suppress(AssertionError):
        await eventually(passes, timeout=timeout, interval=2, what="a passing audit")
    return last, time.monotonic() - start
