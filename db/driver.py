"""The one executor of raw SQL: hot-path statements run on the psycopg connection under a
SQLAlchemy one.

Every other statement is built with SQLAlchemy (ORM or Core) in `db/repositories/`. The
charge's two statements, the projection's one, the entitlement check and the claims of the
outbox and the Stripe inbox are fixed SQL with many parameters (arrays, timestamps) or run
at every request or poll. Through SQLAlchemy each cost about twice the CPU of the same
statement run by psycopg itself (binding and result processing, and a greenlet switch for
every wait): a millisecond and more per renewal in the worker. They live in the repository
modules of their tables and run through `fetch_all` on the driver connection of a pooled
SQLAlchemy connection or session, so they share its pool and, for a session, its
transaction. The SQL uses psycopg's `%(name)s` placeholders; column lists are derived from
the table models (`db.models`) where a statement names many.
"""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg
from psycopg import AsyncConnection as PgConnection
from psycopg.rows import dict_row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession


def columns(model: Any, *names: str, prefix: str = "") -> str:
    """`names` as a SQL column list of `model`'s table (each with `prefix`, e.g. `a.`). Every
    name must be a column of the table model: a typo or a renamed column fails when the
    statement is built, at import, not at its first run."""
    table = model.__table__
    return ", ".join(f"{prefix}{table.c[name].name}" for name in names)


def compact(sql: str) -> str:
    """`sql` with every run of whitespace made one space. psycopg caches how it parses a
    statement only up to 4 KB of text, and indentation should not push one past that.
    Quoted text is joined too: only for SQL whose literals hold no runs of whitespace."""
    if "--" in sql:
        raise ValueError("joining the lines would make a -- comment swallow the statement")
    return " ".join(sql.split())


async def driver_connection(db: AsyncConnection | AsyncSession) -> PgConnection[Any]:
    """The psycopg connection `db` runs on (for a session: that of its transaction)."""
    conn = await db.connection() if isinstance(db, AsyncSession) else db
    raw = await conn.get_raw_connection()
    pg = raw.driver_connection
    assert isinstance(pg, PgConnection), "the database URL must use postgresql+psycopg"
    return pg


class ConnectionLost(Exception):
    """The connection broke under a statement; the pool has dropped it, and the statement may
    be run again on a fresh one."""


async def fetch_all(
    db: AsyncConnection | AsyncSession, sql: LiteralString, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Run one statement on `db`'s psycopg connection; its rows as dicts. A connection that
    broke (it died in the pool, the server went away) is invalidated, so that the pool never
    hands it out again, and reported as `ConnectionLost`."""
    conn = await db.connection() if isinstance(db, AsyncSession) else db
    pg = await driver_connection(conn)
    try:
        async with pg.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return await cur.fetchall() if cur.description is not None else []
    except psycopg.OperationalError as err:
        if not pg.broken:
            raise
        await conn.invalidate(err)
        raise ConnectionLost(type(err).__name__) from err
