"""The bare baseline of usage ingestion: FastAPI inserting the posted events into
`usage_events`, nothing else.

Same table (and its unique (customer_id, transaction_id) index), same driver and pool
(SQLAlchemy async engine over psycopg, autocommit, a fixed pool of 10) as Recur's
`POST /v1/usage_events[/batch]`, and the same way of inserting a batch (one INSERT over
unnest arrays, `ON CONFLICT DO NOTHING`). No auth, no validation, no lookup of who meters
what, no aggregates. Served by `bench.usage` with `uvicorn bench.bare_usage_app:app`.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine(
    os.environ["BENCH_DATABASE_URL"], pool_size=10, max_overflow=0, isolation_level="AUTOCOMMIT"
)
MANY = text(
    "INSERT INTO usage_events"
    " (id, customer_id, transaction_id, event_name, timestamp, properties, created_at)"
    " SELECT id, c, t, n, ts, CAST(p AS json), :now FROM unnest(CAST(:ids AS text[]),"
    " CAST(:customers AS text[]), CAST(:transactions AS text[]), CAST(:names AS text[]),"
    " CAST(:times AS timestamptz[]), CAST(:props AS text[])) AS d(id, c, t, n, ts, p)"
    " ON CONFLICT (customer_id, transaction_id) DO NOTHING"
)
ONE = text(
    "INSERT INTO usage_events"
    " (id, customer_id, transaction_id, event_name, timestamp, properties, created_at)"
    " VALUES (:id, :customer, :transaction, :name, :ts, CAST(:props AS json), :now)"
    " ON CONFLICT (customer_id, transaction_id) DO NOTHING"
)
app = FastAPI()


def _time(event: dict[str, Any], now: datetime) -> datetime:
    raw = event.get("timestamp")
    return datetime.fromisoformat(raw) if raw else now


@app.post("/batch", status_code=202)
async def batch(request: Request) -> dict[str, int]:
    events = (await request.json())["events"]
    now = datetime.now(UTC)
    params = {
        "now": now,
        "ids": [f"uev_{secrets.token_hex(12)}" for _ in events],
        "customers": [e["customer_id"] for e in events],
        "transactions": [e["transaction_id"] for e in events],
        "names": [e["event_name"] for e in events],
        "times": [_time(e, now) for e in events],
        "props": [json.dumps(e.get("properties", {})) for e in events],
    }
    async with engine.connect() as conn:
        result = await conn.execute(MANY, params)
    return {"accepted": result.rowcount}


@app.post("/event", status_code=202)
async def event(request: Request) -> dict[str, Any]:
    e = await request.json()
    now = datetime.now(UTC)
    params = {
        "now": now,
        "id": f"uev_{secrets.token_hex(12)}",
        "customer": e["customer_id"],
        "transaction": e["transaction_id"],
        "name": e["event_name"],
        "ts": _time(e, now),
        "props": json.dumps(e.get("properties", {})),
    }
    async with engine.connect() as conn:
        result = await conn.execute(ONE, params)
    return {"id": params["id"], "duplicate": result.rowcount == 0}
