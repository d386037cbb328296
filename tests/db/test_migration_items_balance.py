"""The items-and-balance migration (0009) on a database the code before items filled:
every subscription becomes one item of quantity 1 with the id its workflow derives, and
credit carried as `credit` lines becomes balance credit, to the cent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine, text

from db.migrate import upgrade
from domain.items import legacy_item_id
from tests.conftest import Stack

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def at_0007(stack: Stack) -> Iterator[tuple[str, Engine]]:
    url = stack.settings.effective_database_url
    name = f"recur_migrate_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    db_url = url.rsplit("/", 1)[0] + f"/{name}"
    upgrade(db_url, "0007")
    engine = create_engine(db_url)
    try:
        yield db_url, engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def _subscription(conn: object, sub: str, customer: str, plan: str) -> None:
    conn.execute(  # type: ignore[attr-defined]
        text(
            "INSERT INTO subscriptions (id, customer_id, plan_id, status, cancel_at_period_end,"
            " dunning, created_at, updated_at, state_version)"
            " VALUES (:id, :c, :p, 'active', false, '{}', :t, :t, 1)"
        ),
        {"id": sub, "c": customer, "p": plan, "t": T0},
    )


def _invoice(
    conn: object, invoice: str, sub: str, customer: str, status: str, lines: list[tuple[str, int]]
) -> None:
    """An invoice as the charge activity writes it: its total is the sum of its lines."""
    at = T0 + timedelta(days=len(invoice))
    conn.execute(  # type: ignore[attr-defined]
        text(
            "INSERT INTO invoices (id, subscription_id, customer_id, status, billing_reason,"
            " total, currency, period_start, period_end, created_at)"
            " VALUES (:id, :s, :c, :st, 'subscription_update', :total, 'usd', :t, :t, :t)"
        ),
        {
            "id": invoice,
            "s": sub,
            "c": customer,
            "st": status,
            "total": sum(a for _, a in lines),
            "t": at,
        },
    )
    for position, (kind, amount) in enumerate(lines):
        conn.execute(  # type: ignore[attr-defined]
            text(
                "INSERT INTO invoice_lines (invoice_id, position, kind, description, amount,"
                " period_start, period_end) VALUES (:i, :p, :k, 'x', :a, :t, :t)"
            ),
            {"i": invoice, "p": position, "k": kind, "a": amount, "t": at},
        )


async def test_items_and_carried_credit_migrate(at_0007: tuple[str, Engine]) -> None:
    url, engine = at_0007
    with engine.begin() as conn:
        for customer in ("cus_a", "cus_b"):
            conn.execute(
                text("INSERT INTO customers (id, email, created_at) VALUES (:id, :e, :t)"),
                {"id": customer, "e": f"{customer}@example.com", "t": T0},
            )
        conn.execute(
            text(
                "INSERT INTO plans (id, name, amount, currency, interval, interval_count,"
                " trial_days, features, created_at)"
                " VALUES ('plan_pro', 'Pro', 2000, 'usd', 'month', 1, 0, '[]', :t)"
            ),
            {"t": T0},
        )
        for sub, customer in (("sub_1", "cus_a"), ("sub_2", "cus_a"), ("sub_3", "cus_b")):
            _subscription(conn, sub, customer, "plan_pro")
        # sub_1: a downgrade now netted -600, carried; still unused.
        _invoice(
            conn,
            "in_1a",
            "sub_1",
            "cus_a",
            "paid",
            [("proration", -900), ("proration", 300), ("credit", 600)],
        )
        # sub_2: 1000 carried, 400 of it used by the renewal and the rest carried on; then
        # 250 carried on an invoice that was voided (the void invoice used nothing).
        _invoice(conn, "in_2a", "sub_2", "cus_a", "paid", [("proration", -1000), ("credit", 1000)])
        _invoice(
            conn,
            "in_2bb",
            "sub_2",
            "cus_a",
            "paid",
            [("credit", -1000), ("subscription", 600), ("credit", 400)],
        )
        _invoice(
            conn, "in_2ccc", "sub_2", "cus_a", "void", [("credit", -400), ("subscription", 2000)]
        )
        # sub_3: credit carried and used in full.
        _invoice(conn, "in_3a", "sub_3", "cus_b", "paid", [("proration", -500), ("credit", 500)])
        _invoice(
            conn, "in_3bb", "sub_3", "cus_b", "paid", [("credit", -500), ("subscription", 2000)]
        )

    await asyncio.to_thread(upgrade, url)

    with engine.connect() as conn:
        items = conn.execute(
            text("SELECT id, subscription_id, plan_id, quantity FROM subscription_items")
        ).all()
        ledger = conn.execute(
            text(
                "SELECT customer_id, currency, amount, balance_after, type, subscription_id,"
                " source_key FROM customer_balance_transactions ORDER BY created_at"
            )
        ).all()
    assert sorted(items) == sorted(
        (legacy_item_id(sub), sub, "plan_pro", 1) for sub in ("sub_1", "sub_2", "sub_3")
    )
    # sub_1 carries 600; sub_2 carries 400 (the void invoice used nothing); sub_3 nothing.
    assert sorted(ledger) == sorted(
        [
            ("cus_a", "usd", 600, 600, "adjustment", "sub_1", "carried_credit:sub_1"),
            ("cus_a", "usd", 400, 1000, "adjustment", "sub_2", "carried_credit:sub_2"),
        ]
    )
