"""Whether the database answers."""

from __future__ import annotations

from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession


async def ping(db: AsyncSession | AsyncConnection) -> None:
    """One round trip; raises when the database does not answer."""
    await db.execute(select(literal(1)))
