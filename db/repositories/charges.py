"""The two statements of a charge: open the attempt before Stripe, settle it after.

Each is one statement run on its own (autocommit), so a charge costs the database two round
trips instead of two transactions of five or six statements each. One statement is as
atomic as the transaction it replaces, and its row locks are held to its end:

* `open_attempt` inserts the invoice and its lines once, locks the invoice's succeeded
  attempt and the attempt under the key (whichever exist), and inserts the attempt under
  the key as `pending` when neither exists; it answers what it found, what it inserted and
  the customer's Stripe ids.
* `settle_attempt` locks the attempt under the key, records Stripe's answer on it if it is
  still pending (a retry that got there first wins), marks the invoice paid when the
  attempt succeeded, and answers the attempt as it now stands. Stripe's webhook settles a
  payment that succeeded later with it too (`late`), in the request's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from db.driver import columns, fetch_all
from db.models import Invoice, InvoiceLine, PaymentAttempt
from domain.contracts import InvoiceDraft


@dataclass(frozen=True)
class Attempt:
    """A payment attempt as a charge needs it."""

    id: str
    idempotency_key: str
    invoice_id: str
    attempt_number: int
    amount: int
    currency: str
    status: str  # pending | succeeded | failed
    stripe_payment_intent_id: str | None
    decline_code: str | None
    failure_code: str | None
    failure_message: str | None


@dataclass(frozen=True)
class Opened:
    """What `open_attempt` found: the invoice's succeeded attempt, the attempt under the key
    (`created` when this call inserted it) and the customer's Stripe ids."""

    paid: Attempt | None
    mine: Attempt | None
    created: bool
    stripe_customer_id: str | None
    payment_method: str | None


@dataclass(frozen=True)
class Settlement:
    """Stripe's answer, as recorded on the attempt."""

    status: str  # succeeded | failed
    payment_intent_id: str | None = None
    decline_code: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None


_PAYMENT_ATTEMPTS = PaymentAttempt.__table__  # type: ignore[attr-defined]

# The columns an `Attempt` is read from: its fields, each a column of the table model.
_ATTEMPT_FIELDS = [_PAYMENT_ATTEMPTS.c[f.name].name for f in fields(Attempt)]
_ATTEMPT_COLUMNS = ", ".join(_ATTEMPT_FIELDS)
# What the statements insert, in the order of their values.
_INVOICE_COLUMNS = columns(
    Invoice,
    "id",
    "subscription_id",
    "customer_id",
    "status",
    "billing_reason",
    "total",
    "currency",
    "period_start",
    "period_end",
    "created_at",
)
_LINE_COLUMNS = columns(
    InvoiceLine,
    "invoice_id",
    "position",
    "kind",
    "description",
    "amount",
    "period_start",
    "period_end",
)
_NEW_ATTEMPT_COLUMNS = columns(
    PaymentAttempt,
    "id",
    "idempotency_key",
    "invoice_id",
    "subscription_id",
    "attempt_number",
    "amount",
    "currency",
    "payment_method",
    "status",
    "actor",
    "created_at",
)
_NO_ATTEMPT = ", ".join("NULL" for _ in _ATTEMPT_FIELDS)

_OPEN = f"""
WITH new_invoice AS (
    INSERT INTO invoices ({_INVOICE_COLUMNS})
    VALUES (%(invoice_id)s, %(subscription_id)s, %(customer_id)s, 'open', %(billing_reason)s,
            %(total)s, %(currency)s, %(period_start)s, %(period_end)s, %(created_at)s)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), new_lines AS (
    INSERT INTO invoice_lines ({_LINE_COLUMNS})
    SELECT new_invoice.id, l.position, l.kind, l.description, l.amount, l.period_start,
           l.period_end
    FROM new_invoice,
         unnest(CAST(%(line_positions)s AS integer[]), CAST(%(line_kinds)s AS text[]),
                CAST(%(line_descriptions)s AS text[]), CAST(%(line_amounts)s AS bigint[]),
                CAST(%(line_starts)s AS timestamptz[]), CAST(%(line_ends)s AS timestamptz[]))
             AS l(position, kind, description, amount, period_start, period_end)
), found AS (
    SELECT {_ATTEMPT_COLUMNS} FROM payment_attempts
    WHERE invoice_id = %(invoice_id)s AND (status = 'succeeded' OR idempotency_key = %(key)s)
    FOR UPDATE
), customer AS (
    SELECT stripe_customer_id, default_payment_method FROM customers WHERE id = %(customer_id)s
), opened AS (
    INSERT INTO payment_attempts ({_NEW_ATTEMPT_COLUMNS})
    SELECT %(attempt_id)s, %(key)s, %(invoice_id)s, %(subscription_id)s, %(attempt_number)s,
           %(total)s, %(currency)s, (SELECT default_payment_method FROM customer), 'pending',
           %(actor)s, %(now)s
    WHERE NOT EXISTS (SELECT FROM found)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING {_ATTEMPT_COLUMNS}
)
SELECT 'found' AS source, {_ATTEMPT_COLUMNS}, NULL AS stripe_customer_id,
       NULL AS default_payment_method FROM found
UNION ALL
SELECT 'opened', {_ATTEMPT_COLUMNS}, NULL, NULL FROM opened
UNION ALL
SELECT 'customer', {_NO_ATTEMPT}, stripe_customer_id, default_payment_method FROM customer
"""

_SETTLE = f"""
WITH mine AS (
    SELECT {_ATTEMPT_COLUMNS} FROM payment_attempts WHERE idempotency_key = %(key)s FOR UPDATE
), settled AS (
    UPDATE payment_attempts AS a
    SET status = %(status)s,
        stripe_payment_intent_id = COALESCE(%(payment_intent_id)s, a.stripe_payment_intent_id),
        decline_code = COALESCE(%(decline_code)s, a.decline_code),
        failure_code = COALESCE(%(failure_code)s, a.failure_code),
        failure_message = COALESCE(%(failure_message)s, a.failure_message),
        completed_at = %(now)s
    FROM mine
    WHERE a.id = mine.id
      AND (mine.status = 'pending'
           OR (CAST(%(late)s AS boolean) AND mine.status = 'failed' AND %(status)s = 'succeeded'))
    RETURNING {", ".join(f"a.{c}" for c in _ATTEMPT_FIELDS)}
), standing AS (
    -- The locked row is the latest version: a retry that settled it first is seen here.
    SELECT {_ATTEMPT_COLUMNS} FROM settled
    UNION ALL
    SELECT {_ATTEMPT_COLUMNS} FROM mine WHERE NOT EXISTS (SELECT FROM settled)
), paid AS (
    -- A payment that succeeded makes its invoice paid, unless it is no longer open (voided
    -- when its subscription ended, say): a paid invoice never changes again.
    UPDATE invoices SET status = 'paid', paid_at = %(now)s
    WHERE id = %(invoice_id)s AND status = 'open'
      AND EXISTS (SELECT FROM standing WHERE status = 'succeeded')
)
SELECT {_ATTEMPT_COLUMNS} FROM standing
"""


async def open_attempt(
    conn: AsyncConnection,
    invoice: InvoiceDraft,
    *,
    key: str,
    attempt_id: str,
    attempt_number: int,
    actor: str | None,
    now: datetime,
) -> Opened:
    lines = invoice.lines
    params: dict[str, Any] = {
        "invoice_id": invoice.id,
        "subscription_id": invoice.subscription_id,
        "customer_id": invoice.customer_id,
        "billing_reason": invoice.billing_reason,
        "total": invoice.total,
        "currency": invoice.currency,
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "created_at": invoice.created_at,
        "line_positions": list(range(len(lines))),
        "line_kinds": [line.kind.value for line in lines],
        "line_descriptions": [line.description for line in lines],
        "line_amounts": [line.amount for line in lines],
        "line_starts": [line.period_start for line in lines],
        "line_ends": [line.period_end for line in lines],
        "key": key,
        "attempt_id": attempt_id,
        "attempt_number": attempt_number,
        "actor": actor,
        "now": now,
    }
    paid = mine = None
    created = False
    stripe_customer_id = payment_method = None
    for row in await fetch_all(conn, _OPEN, params):
        if row["source"] == "customer":
            stripe_customer_id, payment_method = (
                row["stripe_customer_id"],
                row["default_payment_method"],
            )
            continue
        attempt = _attempt(row)
        if attempt.status == "succeeded" and attempt.idempotency_key != key:
            paid = attempt
        elif attempt.idempotency_key == key:
            mine, created = attempt, row["source"] == "opened"
            if attempt.status == "succeeded":
                paid = attempt
    return Opened(paid, mine, created, stripe_customer_id, payment_method)


async def settle_attempt(
    db: AsyncConnection | AsyncSession,
    *,
    key: str,
    invoice_id: str,
    result: Settlement,
    now: datetime,
    late: bool = False,
) -> Attempt:
    """Record Stripe's answer on the attempt under `key`, if it is still pending, and when it
    succeeded mark its invoice paid: the one place where "payment succeeded ⇒ invoice paid"
    is written. `late`: the answer came after the attempt was recorded failed (a payment
    that needed 3-D Secure and succeeded later, reported by Stripe's webhook), and a success
    settles that failed attempt too (keeping why it failed at first). Answers the attempt
    as it now stands."""
    params = {
        "key": key,
        "invoice_id": invoice_id,
        "status": result.status,
        "payment_intent_id": result.payment_intent_id,
        "decline_code": result.decline_code,
        "failure_code": result.failure_code,
        "failure_message": result.failure_message,
        "now": now,
        "late": late,
    }
    (row,) = await fetch_all(db, _SETTLE, params)  # the attempt, always one row
    return _attempt(row)


@dataclass(frozen=True)
class IntentAttempt:
    """The attempt that created a PaymentIntent, with what a late success needs of it."""

    attempt: Attempt
    subscription_id: str
    clock_time: datetime | None  # its subscription's test-clock time, if on a clock


_OF_INTENT = f"""
SELECT {", ".join(f"a.{c}" for c in _ATTEMPT_FIELDS)}, a.subscription_id,
       c.frozen_time AS clock_time
FROM payment_attempts AS a
LEFT JOIN subscriptions AS s ON s.id = a.subscription_id
LEFT JOIN test_clocks AS c ON c.id = s.test_clock_id
WHERE a.stripe_payment_intent_id = %(payment_intent_id)s
LIMIT 1
FOR UPDATE OF a
"""


async def attempt_of_intent(
    db: AsyncConnection | AsyncSession, payment_intent_id: str
) -> IntentAttempt | None:
    """The attempt of this PaymentIntent, locked for the caller's transaction (two events
    about one payment: the second sees what the first did)."""
    rows = await fetch_all(db, _OF_INTENT, {"payment_intent_id": payment_intent_id})
    if not rows:
        return None
    row = rows[0]
    return IntentAttempt(_attempt(row), row["subscription_id"], row["clock_time"])


def _attempt(row: Any) -> Attempt:
    return Attempt(**{name: row[name] for name in _ATTEMPT_FIELDS})
