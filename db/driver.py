"""Hot-path statements run on the psycopg connection under a SQLAlchemy one.

The charge's two statements and the projection's one are fixed SQL with many parameters
(arrays, timestamps). Through SQLAlchemy each cost about twice the CPU of the same
statement run by psycopg itself (binding and result processing, and a greenlet switch for
every wait): a millisecond and more per renewal in the worker. These run on the driver
connection of a pooled SQLAlchemy connection or session, so they share its pool and, for a
session, its transaction. The SQL uses psycopg's `%(name)s` placeholders.
"""

from __future__ import annotations

from typing import Any, LiteralString

from psycopg import AsyncConnection as PgConnection
from psycopg.rows import dict_row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession


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


async def fetch_all(
    db: AsyncConnection | AsyncSession, sql: LiteralString, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Run one statement on `db`'s psycopg connection; its rows as dicts."""
    pg = await driver_connection(db)
    async with pg.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        return await cur.fetchall() if cur.description is not None else []
