"""The usage migration goes down to 0007 and up again on a migrated database."""

from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.migrate import alembic_config, upgrade

USAGE_TABLES = {
    "meters",
    "plan_feature_limits",
    "usage_events",
    "usage_aggregates",
    "usage_unique_values",
}


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        return {str(r[0]) for r in rows}


async def test_usage_migration_down_and_up(scratch: AsyncEngine) -> None:
    url = scratch.url.render_as_string(hide_password=False)
    assert await _tables(scratch) >= USAGE_TABLES
    await asyncio.to_thread(command.downgrade, alembic_config(url), "0007")
    assert not USAGE_TABLES & await _tables(scratch)
    async with scratch.connect() as conn:
        columns = await conn.execute(
            text("SELECT column_name FROM information_schema.columns WHERE table_name = 'plans'")
        )
        assert "usage_type" not in {str(r[0]) for r in columns}
    await asyncio.to_thread(upgrade, url)
    assert await _tables(scratch) >= USAGE_TABLES
