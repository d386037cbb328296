"""The fault scenarios, sized by `n`: the tests run them small, bench/faults.py large.

Each builds its own subscriptions on its own test clock, runs one operation of Recur (a
clock advance that renews all of them, upgrades, support retries) while a fault hits,
then audits the end state (`tests.faults.audit`) until it holds or a deadline passes.

The test acts as the product backend: a request that fails with a 5xx, a timeout or a
broken connection is sent again with the same Idempotency-Key, as a real client would,
until its deadline; any other answer is final. Every answer is journaled: a 500 (an
unhandled error) is a failure, other 5xx are reported beside the result.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.faults.audit import Audit, Expected, settle
from tests.faults.harness import FaultStack
from tests.faults.proxy import StripeFaults

T0 = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
MONTH_LATER = datetime(2030, 2, 1, 10, 0, tzinfo=UTC)
MID_PERIOD = datetime(2030, 1, 11, 10, 0, tzinfo=UTC)
RENEWED = ["subscription_create", "subscription_cycle"]  # each invoice paid once
CREATE_CONCURRENCY = 8
# A product backend's timeout for one lifecycle call (an upgrade, a support retry): when
# it passes, the backend sends the call again, as a user clicking again would. Shorter
# than a killed worker's recovery (a workflow task times out after 10 s), so the re-sent
# call meets a workflow whose task is being retried: the path finding 2 broke.
CLIENT_TIMEOUT = 8.0
# The same for a test clock's advance, which answers once every subscription caught up:
# three worker kills take it past 20 s, so the backend re-sends it.
ADVANCE_TIMEOUT = 20.0


# --------------------------------------------------------------------------- the client


@dataclass
class Journal:
    """Every answer the backend got (or the error it got instead), per request."""

    outcomes: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)

    def record(self, what: str, outcome: str, body: str = "") -> None:
        self.outcomes[f"{what} -> {outcome}"] += 1
        if outcome.startswith("5"):
            self.server_errors.append(f"{what} -> {outcome} {body[:300]}")

    @property
    def internal_errors(self) -> list[str]:
        return [e for e in self.server_errors if " -> 500 " in e]


class Backend:
    """A product backend calling Recur's API, retrying what a real client retries."""

    def __init__(self, http: httpx.AsyncClient, journal: Journal) -> None:
        self.http = http
        self.journal = journal

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        within: float,
        per_try: float = 60.0,
    ) -> httpx.Response | None:
        """The first answer that is not a 5xx, or None when `within` seconds ran out."""
        deadline = time.monotonic() + within
        key = uuid.uuid4().hex
        what = f"{method} {_shape(path)}"
        while (left := deadline - time.monotonic()) > 0:
            try:
                reply = await asyncio.wait_for(
                    self.http.request(method, path, json=body, headers={"Idempotency-Key": key}),
                    min(per_try, left),
                )
            except (httpx.TransportError, TimeoutError) as err:
                self.journal.record(what, type(err).__name__)
                await asyncio.sleep(1)
                continue
            self.journal.record(what, str(reply.status_code), reply.text)
            if reply.status_code < 500:
                return reply
            await asyncio.sleep(1)
        return None

    async def ok(
        self, method: str, path: str, body: dict[str, Any] | None = None, status: int = 200
    ) -> Any:
        """A set-up call (no fault is active): it must answer `status`."""
        reply = await self.call(method, path, body, within=120)
        assert reply is not None, f"{method} {path}: no answer within 120 s"
        assert reply.status_code == status, f"{method} {path}: {reply.status_code} {reply.text}"
        return reply.json()


def _shape(path: str) -> str:
    """`/v1/subscriptions/sub_x/retry_payment` -> `/v1/subscriptions/{id}/retry_payment`."""
    parts = path.split("/")
    return "/".join("{id}" if p != "v1" and any(c.isdigit() for c in p) else p for p in parts)


# --------------------------------------------------------------------------- the report


@dataclass
class Report:
    scenario: str
    n: int
    audit: Audit | None = None
    journal: Journal = field(default_factory=Journal)
    operation_s: float = 0.0  # from the faulted request(s) to their last answer
    settle_s: float = 0.0  # from then until the audit passed (or gave up)
    faults: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # wrong answers to the operation
    api_errors: Counter[str] = field(default_factory=Counter)  # the API's own log

    @property
    def failures(self) -> list[str]:
        out = list(self.errors)
        out += self.audit.problems if self.audit else ["no audit"]
        internal = Counter(self.journal.internal_errors)
        out += [f"{count} x an unhandled error: {e}" for e, count in internal.items()]
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    def text(self, limit: int = 8) -> str:
        failures = self.failures
        head = (
            f"{self.scenario} n={self.n}: {'OK' if not failures else 'FAILED'}; "
            f"operation {self.operation_s:.1f}s, settle {self.settle_s:.1f}s; "
            f"faults {dict(self.faults)}; "
            f"answers {dict(self.journal.outcomes)}"
        )
        lines = [head, *(f"note: {n}" for n in self.notes)]
        if self.api_errors:
            lines.append("the API's unhandled errors (api.log), by their last line:")
            lines += [f"  {count} x {line}" for line, count in self.api_errors.most_common()]
        if self.journal.server_errors:
            lines.append(f"5xx answers ({len(self.journal.server_errors)}):")
            by_answer = Counter(self.journal.server_errors).most_common(limit)
            lines += [f"  {count} x {e}" for e, count in by_answer]
        if failures:
            lines.append(f"{len(failures)} problem(s):")
            lines += failures[:limit]
            if len(failures) > limit:
                lines.append(f"... and {len(failures) - limit} more")
        return "\n".join(lines)


# --------------------------------------------------------------------------- set-up


@dataclass
class Population:
    plan: dict[str, Any]
    clock: dict[str, Any]
    customers: list[dict[str, Any]]
    subs: list[dict[str, Any]]


async def populate(
    backend: Backend, n: int, amount: int = 1000, extra_items: list[str] | None = None
) -> Population:
    """`n` customers with a good card, each subscribed on one new test clock at T0 (to the
    plan, and the plans of `extra_items` beside it)."""
    plan = await backend.ok(
        "POST",
        "/v1/plans",
        {"name": f"Faults {uuid.uuid4().hex[:6]}", "amount": amount, "currency": "usd",
         "interval": "month", "features": ["posts"]},
        201,
    )  # fmt: skip
    clock = await backend.ok("POST", "/v1/test_clocks", {"frozen_time": T0.isoformat()}, 201)
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def customer(i: int) -> dict[str, Any]:
        async with gate:
            body = {"email": f"f{i}-{uuid.uuid4().hex[:6]}@example.com",
                    "payment_method": "pm_card_visa"}  # fmt: skip
            return await backend.ok("POST", "/v1/customers", body, 201)  # type: ignore[no-any-return]

    customers = await asyncio.gather(*(customer(i) for i in range(n)))

    async def subscribe(c: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            body: dict[str, Any] = {"customer_id": c["id"], "test_clock_id": clock["id"]}
            if extra_items:
                body["items"] = [{"plan_id": p} for p in [plan["id"], *extra_items]]
            else:
                body["plan_id"] = plan["id"]
            sub = await backend.ok("POST", "/v1/subscriptions", body, 201)
            assert sub["status"] == "active", sub
            return sub  # type: ignore[no-any-return]

    subs = await asyncio.gather(*(subscribe(c) for c in customers))
    return Population(plan, clock, list(customers), list(subs))


def expect(
    pop: Population, plan_id: str, period_start: datetime, reasons: list[str]
) -> list[Expected]:
    return [Expected(s["id"], s["customer_id"], plan_id, period_start, reasons) for s in pop.subs]


# --------------------------------------------------------------------------- faults

Fault = Callable[[FaultStack, Report, asyncio.Event], Awaitable[None]]


def kill_after_stripe_answers(target: str, times: int, down_for: float = 0.0) -> Fault:
    """Each time Stripe has answered a request the worker made (and the proxy holds the
    answer back), SIGKILL `target`, keep it down `down_for` seconds, start it again; stop
    early once the operation under test has answered (`done`)."""

    async def fault(stack: FaultStack, report: Report, done: asyncio.Event) -> None:
        proxy = stack.proxy
        for i in range(times):
            seen = proxy.counts["answered"]
            answered = asyncio.create_task(proxy.wait_for("answered", seen + 1, timeout=40))
            finished = asyncio.create_task(done.wait())
            await asyncio.wait({answered, finished}, return_when=asyncio.FIRST_COMPLETED)
            finished.cancel()
            if not answered.done() or not answered.result():
                answered.cancel()
                report.notes.append(
                    f"{target}: {i} of {times} kills; then "
                    + ("the operation had answered" if done.is_set() else "no Stripe call in 40 s")
                )
                return
            await stack.kill9(target)
            report.faults[f"{target} kill -9"] = report.faults.get(f"{target} kill -9", 0) + 1
            if down_for:
                await asyncio.sleep(down_for)
            await stack.restart(target)

    return fault


async def _run_with_fault(
    stack: FaultStack,
    report: Report,
    faults: StripeFaults,
    fault: Fault | None,
    operation: Awaitable[Any],
) -> Any:
    """Run `operation` with the proxy's `faults` on and `fault` beside it; the proxy is
    clean again afterwards. The operation's time goes into the report."""
    stack.proxy.set_faults(faults)
    start_counts = dict(stack.proxy.counts)
    api_log = stack.log_size("api")
    crashes = {name: stack.proc(name).crashes for name in ("worker", "api")}
    start = time.monotonic()
    done = asyncio.Event()
    fault_task = asyncio.create_task(fault(stack, report, done)) if fault else None
    try:
        result = await operation
        report.operation_s = time.monotonic() - start
        done.set()
        if fault_task is not None:
            await asyncio.wait_for(fault_task, 120)
    finally:
        for name, before in crashes.items():
            if stack.proc(name).crashes > before:
                report.faults[f"{name} exited unasked, restarted"] = (
                    stack.proc(name).crashes - before
                )
        stack.proxy.set_faults(StripeFaults())
        if fault_task is not None and not fault_task.done():
            fault_task.cancel()
        report.api_errors.update(stack.unhandled_errors(since=api_log))
        for name, count in stack.proxy.counts.items():
            if name.startswith(("dropped", "declined")) and count > start_counts.get(name, 0):
                report.faults[f"stripe {name}"] = count - start_counts.get(name, 0)
    return result


async def _finish(
    stack: FaultStack,
    report: Report,
    expected: list[Expected],
    clock: tuple[str, datetime] | None,
    settle_timeout: float | None,
) -> Report:
    """Audit until the end state holds, for at most `settle_timeout` seconds (by default
    45 s and a quarter of a second per subscription: retries back off, a large N queues)."""
    assert stack.temporal is not None
    timeout = settle_timeout if settle_timeout is not None else 45 + len(expected) / 4
    report.audit, report.settle_s = await settle(
        stack.settings, stack.temporal, expected, clock, timeout
    )
    return report


# --------------------------------------------------------------------------- scenarios


async def renewal_storm(
    stack: FaultStack,
    backend: Backend,
    name: str,
    n: int,
    fault: Fault | None,
    faults: StripeFaults,
    *,
    within: float = 150,
    settle_timeout: float | None = None,
) -> Report:
    """`n` subscriptions due at once: one advance of their clock by a period, faulted."""
    report = Report(name, n, journal=backend.journal)
    pop = await populate(backend, n)
    clock_id = pop.clock["id"]
    advance = backend.call(
        "POST",
        f"/v1/test_clocks/{clock_id}/advance",
        {"frozen_time": MONTH_LATER.isoformat()},
        within=within,
        per_try=ADVANCE_TIMEOUT,
    )
    reply = await _run_with_fault(stack, report, faults, fault, advance)
    # The backend retried what failed with the same body and Idempotency-Key: the advance
    # it asked for must have been done, and said so.
    if reply is None:
        report.errors.append(f"the advance got no final answer within {within:.0f} s")
    elif reply.status_code != 200:
        report.errors.append(f"the advance's final answer: {reply.status_code} {reply.text[:300]}")
    expected = expect(pop, pop.plan["id"], MONTH_LATER, RENEWED)
    return await _finish(stack, report, expected, (clock_id, MONTH_LATER), settle_timeout)


async def upgrade_storm(
    stack: FaultStack,
    backend: Backend,
    n: int,
    fault: Fault | None,
    faults: StripeFaults,
    *,
    within: float = 120,
    settle_timeout: float | None = None,
) -> Report:
    """`n` upgrades to a pricier plan (charged at once, prorated) at the same moment."""
    report = Report("upgrade", n, journal=backend.journal)
    pop = await populate(backend, n, amount=1000)
    pro = await backend.ok(
        "POST",
        "/v1/plans",
        {"name": f"Faults pro {uuid.uuid4().hex[:6]}", "amount": 2500, "currency": "usd",
         "interval": "month", "features": ["posts", "archive"]},
        201,
    )  # fmt: skip
    clock_id = pop.clock["id"]
    await backend.ok(
        "POST", f"/v1/test_clocks/{clock_id}/advance", {"frozen_time": MID_PERIOD.isoformat()}
    )

    async def upgrade(sub: dict[str, Any]) -> httpx.Response | None:
        return await backend.call(
            "POST",
            f"/v1/subscriptions/{sub['id']}/change_plan",
            {"plan_id": pro["id"]},
            within=within,
            per_try=CLIENT_TIMEOUT,
        )

    replies = await _run_with_fault(
        stack, report, faults, fault, asyncio.gather(*(upgrade(s) for s in pop.subs))
    )
    _note_answers(report, "change_plan", replies)
    expected = expect(pop, pro["id"], T0, ["subscription_create", "subscription_update"])
    return await _finish(stack, report, expected, (clock_id, MID_PERIOD), settle_timeout)


async def support_retry(
    stack: FaultStack,
    backend: Backend,
    n: int,
    fault: Fault | None,
    faults: StripeFaults,
    *,
    within: float = 120,
    settle_timeout: float | None = None,
) -> Report:
    """`n` renewals declined once (the proxy answers for the bank), so `past_due`; then a
    support agent's `retry_payment` of each, which is charged and recovers it."""
    report = Report("retry_payment", n, journal=backend.journal)
    pop = await populate(backend, n)
    clock_id = pop.clock["id"]
    stack.proxy.set_faults(StripeFaults(declines=n))
    try:
        await backend.ok(
            "POST", f"/v1/test_clocks/{clock_id}/advance", {"frozen_time": MONTH_LATER.isoformat()}
        )
    finally:
        stack.proxy.set_faults(StripeFaults())
    for sub in pop.subs:
        row = await backend.ok("GET", f"/v1/subscriptions/{sub['id']}")
        assert row["status"] == "past_due", f"set-up: {sub['id']} is {row['status']}, not past_due"

    async def retry(sub: dict[str, Any]) -> httpx.Response | None:
        return await backend.call(
            "POST",
            f"/v1/subscriptions/{sub['id']}/retry_payment",
            within=within,
            per_try=CLIENT_TIMEOUT,
        )

    replies = await _run_with_fault(
        stack, report, faults, fault, asyncio.gather(*(retry(s) for s in pop.subs))
    )
    _note_answers(report, "retry_payment", replies)
    expected = expect(pop, pop.plan["id"], MONTH_LATER, RENEWED)
    return await _finish(stack, report, expected, (clock_id, MONTH_LATER), settle_timeout)


def _note_answers(report: Report, what: str, replies: list[httpx.Response | None]) -> None:
    final = Counter(
        "no answer" if r is None else f"{r.status_code} {_error_code(r)}".strip() for r in replies
    )
    report.notes.append(f"{what} final answers: {dict(final)}")


def _error_code(reply: httpx.Response) -> str:
    if reply.status_code < 400:
        return ""
    try:
        return str(reply.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


# The scenarios of issue #17, by name: what the pytest module and bench/faults.py run.

STORM_STRIPE_HOLD = StripeFaults(reply_delay=0.8)  # a window in which Stripe has answered
# How long PostgreSQL and Temporal stay down. Temporal's outage outlasts the SDK client's
# own retries of an RPC (about 10 s), as a crashed server restarted by a supervisor with
# back-off does: the API must ride it out itself.
POSTGRES_OUTAGE = 5.0
TEMPORAL_OUTAGE = 12.0


async def storm_worker_kill(stack: FaultStack, backend: Backend, n: int, kills: int = 3) -> Report:
    return await renewal_storm(
        stack, backend, "storm_worker_kill", n,
        kill_after_stripe_answers("worker", kills), STORM_STRIPE_HOLD,
    )  # fmt: skip


async def storm_postgres_kill(stack: FaultStack, backend: Backend, n: int) -> Report:
    return await renewal_storm(
        stack, backend, "storm_postgres_kill", n,
        kill_after_stripe_answers("postgres", 1, down_for=POSTGRES_OUTAGE), STORM_STRIPE_HOLD,
    )  # fmt: skip


async def storm_temporal_kill(stack: FaultStack, backend: Backend, n: int) -> Report:
    return await renewal_storm(
        stack, backend, "storm_temporal_kill", n,
        kill_after_stripe_answers("temporal", 1, down_for=TEMPORAL_OUTAGE), STORM_STRIPE_HOLD,
    )  # fmt: skip


STRIPE_FLAKY = StripeFaults(delay=0.05, reply_delay=0.2, drop_before=0.15, drop_after=0.3)


async def storm_stripe_faults(stack: FaultStack, backend: Backend, n: int) -> Report:
    return await renewal_storm(stack, backend, "storm_stripe_faults", n, None, STRIPE_FLAKY)


async def upgrade_worker_kill(
    stack: FaultStack, backend: Backend, n: int, kills: int = 2
) -> Report:
    return await upgrade_storm(
        stack, backend, n, kill_after_stripe_answers("worker", kills), StripeFaults(reply_delay=1.0)
    )


async def retry_payment_worker_kill(
    stack: FaultStack, backend: Backend, n: int, kills: int = 2
) -> Report:
    return await support_retry(
        stack, backend, n, kill_after_stripe_answers("worker", kills), StripeFaults(reply_delay=1.0)
    )


SCENARIOS: dict[str, Callable[[FaultStack, Backend, int], Awaitable[Report]]] = {
    "storm_worker_kill": storm_worker_kill,
    "storm_postgres_kill": storm_postgres_kill,
    "storm_temporal_kill": storm_temporal_kill,
    "storm_stripe_faults": storm_stripe_faults,
    "upgrade_worker_kill": upgrade_worker_kill,
    "retry_payment_worker_kill": retry_payment_worker_kill,
}
