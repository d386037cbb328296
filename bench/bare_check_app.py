"""The bare baseline of the entitlement check: FastAPI doing one indexed SELECT, nothing else.

Same table, same index, same SQL, same driver and pool (SQLAlchemy async engine over psycopg,
autocommit, a fixed pool of 20) as Recur's `GET /v1/entitlements/check`: one round trip per
request. No auth, no middleware, no schemas.
Served by `bench.entitlements` with `uvicorn bench.bare_check_app:app`.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine(
    os.environ["BENCH_DATABASE_URL"], pool_size=20, max_overflow=0, isolation_level="AUTOCOMMIT"
)
SQL = text(
    "SELECT max(active_until), count(*) FROM entitlements"
    " WHERE customer_id = :customer_id AND feature = :feature"
)
app = FastAPI()


@app.get("/check")
async def check(customer_id: str, feature: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (await conn.execute(SQL, {"customer_id": customer_id, "feature": feature})).one()
    return {"entitled": row[1] > 0, "active_until": row[0]}
