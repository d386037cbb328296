"""The hot-path statements that run on psycopg directly (`db.driver`)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from db.driver import compact
from db.repositories import entitlements
from db.repositories.charges import _OPEN, _SETTLE
from db.repositories.projection import _PROJECT


@pytest.mark.parametrize("sql", [_PROJECT, _OPEN, _SETTLE], ids=["project", "open", "settle"])
def test_each_statement_fits_psycopgs_parse_cache(sql: str) -> None:
    # Longer statements are parsed again at every execution.
    assert len(sql.encode()) <= MAX_CACHED_STATEMENT_LENGTH


def test_compact_joins_lines_and_refuses_comments() -> None:
    assert compact("SELECT a,\n       b\n  FROM t   WHERE x = 'a  b'") == (
        "SELECT a, b FROM t WHERE x = 'a b'"
    )
    with pytest.raises(ValueError, match="comment"):
        compact("SELECT 1 -- one\nFROM t")


async def test_the_entitlement_check_survives_a_connection_that_died_in_the_pool(
    scratch: AsyncEngine,
) -> None:
    """The executor drops a broken connection from the pool, and the check runs again on a
    fresh one: the caller never sees the dead connection."""
    until = datetime(2031, 1, 1, tzinfo=UTC)
    async with scratch.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO entitlements (customer_id, feature, subscription_id, plan_id,"
                " active_until, granted_at) VALUES ('cus_1', 'posts', 'sub_1', 'plan_1', :u, :u)"
            ),
            {"u": until},
        )
    reads = create_async_engine(
        scratch.url, pool_size=1, max_overflow=0, isolation_level="AUTOCOMMIT"
    )
    try:
        granted = [entitlements.Grant(until, None, Decimal(0))]
        assert await entitlements.check_fast(reads, "cus_1", "posts") == granted
        async with reads.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with scratch.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert await entitlements.check_fast(reads, "cus_1", "posts") == granted
        assert await entitlements.check_fast(reads, "cus_1", "vault") == []
        async with reads.connect() as conn:
            fresh = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert fresh != pid, "the dead connection left the pool"
    finally:
        await reads.dispose()
