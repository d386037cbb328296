"""The two statements of a charge (db/repositories/charges.py) against the real PostgreSQL,
on a scratch database: what `open_attempt` records and answers, how `settle_attempt`
settles once, and two settlements racing for one attempt."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.repositories import charges
from domain.contracts import InvoiceDraft
from domain.invoices import InvoiceLine, LineKind

T0 = datetime(2031, 3, 1, tzinfo=UTC)


def _invoice(invoice_id: str = "in_1", customer_id: str = "cus_1") -> InvoiceDraft:
    end = T0 + timedelta(days=31)
    return InvoiceDraft(
        id=invoice_id,
        subscription_id="sub_1",
        customer_id=customer_id,
        currency="eur",
        billing_reason="subscription_cycle",
        lines=[
            InvoiceLine(
                kind=LineKind.PRORATION,
                description="Unused time on Basic",
                amount=-300,
                period_start=T0,
                period_end=end,
            ),
            InvoiceLine(
                kind=LineKind.SUBSCRIPTION,
                description="Pro, März",
                amount=2000,
                period_start=T0,
                period_end=end,
            ),
        ],
        period_start=T0,
        period_end=end,
        created_at=T0,
    )


async def _open(engine: AsyncEngine, invoice: InvoiceDraft, attempt: int = 1) -> charges.Opened:
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        return await charges.open_attempt(
            conn,
            invoice,
            key=f"sub_1:{invoice.id}:{attempt}",
            attempt_id=f"pa_{invoice.id}_{attempt}",
            attempt_number=attempt,
            actor=None,
            now=T0,
        )


async def _settle(
    engine: AsyncEngine, invoice_id: str, attempt: int, result: charges.Settlement
) -> charges.Attempt:
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        return await charges.settle_attempt(
            conn, key=f"sub_1:{invoice_id}:{attempt}", invoice_id=invoice_id, result=result, now=T0
        )


async def _rows(engine: AsyncEngine, sql: str) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(text(sql))]


async def _customer(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO customers (id, email, stripe_customer_id, default_payment_method,"
                " created_at) VALUES ('cus_1', 'a@example.com', 'cus_stripe', 'pm_tok', :t)"
            ),
            {"t": T0},
        )


async def test_open_records_invoice_lines_and_a_pending_attempt_once(scratch: AsyncEngine) -> None:
    await _customer(scratch)
    first = await _open(scratch, _invoice())
    assert first.created and first.paid is None
    assert first.mine is not None and first.mine.status == "pending"
    assert (first.mine.amount, first.mine.currency, first.mine.attempt_number) == (1700, "eur", 1)
    assert (first.stripe_customer_id, first.payment_method) == ("cus_stripe", "pm_tok")

    again = await _open(scratch, _invoice())  # a retry of the same attempt
    assert not again.created and again.mine == first.mine

    assert await _rows(scratch, "SELECT id, status, total FROM invoices") == [
        ("in_1", "open", 1700)
    ]
    assert await _rows(
        scratch, "SELECT position, kind, amount FROM invoice_lines ORDER BY position"
    ) == [(0, "proration", -300), (1, "subscription", 2000)], "lines once, in order"
    assert await _rows(
        scratch, "SELECT idempotency_key, payment_method, status FROM payment_attempts"
    ) == [("sub_1:in_1:1", "pm_tok", "pending")]


async def test_settle_records_stripes_answer_once_and_pays_the_invoice(
    scratch: AsyncEngine,
) -> None:
    await _customer(scratch)
    await _open(scratch, _invoice())
    paid = await _settle(
        scratch, "in_1", 1, charges.Settlement(status="succeeded", payment_intent_id="pi_1")
    )
    assert (paid.status, paid.stripe_payment_intent_id) == ("succeeded", "pi_1")
    late = await _settle(
        scratch, "in_1", 1, charges.Settlement(status="failed", decline_code="card_declined")
    )
    assert late == paid, "a settled attempt keeps its first answer"
    assert await _rows(scratch, "SELECT status, paid_at IS NOT NULL FROM invoices") == [
        ("paid", True)
    ]

    # A later attempt on the paid invoice finds the payment and records nothing.
    second = await _open(scratch, _invoice(), attempt=2)
    assert second.paid == paid and second.mine is None and not second.created
    assert await _rows(scratch, "SELECT count(*) FROM payment_attempts") == [(1,)]


async def test_a_failed_settlement_leaves_the_invoice_open(scratch: AsyncEngine) -> None:
    await _customer(scratch)
    await _open(scratch, _invoice())
    failed = await _settle(
        scratch,
        "in_1",
        1,
        charges.Settlement(status="failed", decline_code="insufficient_funds"),
    )
    assert (failed.status, failed.decline_code) == ("failed", "insufficient_funds")
    assert await _rows(scratch, "SELECT status FROM invoices") == [("open",)]
    retry = await _open(scratch, _invoice(), attempt=2)
    assert retry.created and retry.paid is None


async def test_an_unknown_customer_has_no_stripe_ids(scratch: AsyncEngine) -> None:
    opened = await _open(scratch, _invoice(customer_id="cus_gone"))
    assert opened.created
    assert (opened.stripe_customer_id, opened.payment_method) == (None, None)
    assert await _rows(scratch, "SELECT payment_method FROM payment_attempts") == [(None,)]


async def test_racing_settlements_agree_on_the_first_answer(scratch: AsyncEngine) -> None:
    await _customer(scratch)
    for n in range(20):
        await _open(scratch, _invoice(f"in_r{n}"))
    for n in range(20):
        answers = await asyncio.gather(
            _settle(scratch, f"in_r{n}", 1, charges.Settlement("succeeded", "pi_a")),
            _settle(scratch, f"in_r{n}", 1, charges.Settlement("failed", decline_code="x")),
        )
        assert answers[0] == answers[1], "both see the one answer that was recorded"
    statuses = await _rows(
        scratch,
        "SELECT a.status, i.status FROM payment_attempts a JOIN invoices i ON i.id = a.invoice_id",
    )
    assert len(statuses) == 20
    assert all((a == "succeeded") == (i == "paid") for a, i in statuses)


async def test_a_late_success_settles_a_failed_attempt_and_pays_the_invoice(
    scratch: AsyncEngine,
) -> None:
    """Stripe's webhook reports a payment that needed 3-D Secure: the attempt recorded failed
    is settled as succeeded (keeping why it failed at first) and its invoice is paid, by the
    same statement as a charge's; without `late` a failed attempt keeps its answer."""
    await _customer(scratch)
    await _open(scratch, _invoice())
    first = charges.Settlement("failed", "pi_3ds", failure_code="authentication_required")
    await _settle(scratch, "in_1", 1, first)
    assert await _rows(scratch, "SELECT status FROM invoices") == [("open",)]

    async with scratch.begin() as conn:
        found = await charges.attempt_of_intent(conn, "pi_3ds")
        assert found is not None and found.subscription_id == "sub_1"
        assert (found.attempt.status, found.clock_time) == ("failed", None)
        ignored = await charges.settle_attempt(
            conn,
            key=found.attempt.idempotency_key,
            invoice_id="in_1",
            result=charges.Settlement("succeeded"),
            now=T0 + timedelta(hours=1),
        )
        assert ignored.status == "failed", "a charge's settlement never overrides an answer"
        settled = await charges.settle_attempt(
            conn,
            key=found.attempt.idempotency_key,
            invoice_id="in_1",
            result=charges.Settlement("succeeded"),
            now=T0 + timedelta(hours=1),
            late=True,
        )
    assert (settled.status, settled.stripe_payment_intent_id) == ("succeeded", "pi_3ds")
    assert settled.failure_code == "authentication_required"
    assert await _rows(scratch, "SELECT status, paid_at FROM invoices") == [
        ("paid", T0 + timedelta(hours=1))
    ]
    async with scratch.connect() as conn:
        assert await charges.attempt_of_intent(conn, "pi_unknown") is None
