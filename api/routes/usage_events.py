"""Usage events: one (`POST /v1/usage_events`) or up to 1,000 (`/batch`) at a time,
deduplicated by (customer_id, transaction_id), answered 202.

A batch judges each event on its own: an invalid one is listed in `rejected` with its
index, code and message, and the others are stored. A single event's rejection is its
error answer."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from api.auth import Role
from api.deps import ProductKey, current_principal
from api.errors import describe_errors
from api.usage_ingest import Ingestion
from api.usage_schemas import (
    Rejected,
    UsageBatchIn,
    UsageBatchOut,
    UsageEventAccepted,
    UsageEventFields,
    UsageEventIn,
)
from db.repositories import usage
from db.usage_sink import PostgresUsageSink
from domain import errors
from domain.errors import DomainError
from domain.usage_batch import EventIn

router = APIRouter(prefix="/v1/usage_events", tags=["usage"])

MAX_PROPERTIES_BYTES = 4096


@lru_cache(maxsize=4)
def usage_engine(url: str) -> AsyncEngine:
    """Ingestion's own autocommit pool: each write is one statement, and a burst of batches
    queues here instead of taking the entitlement check's connections. No pre-ping (a round
    trip per request): the sink retries once on a connection that died in the pool."""
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=0,
        isolation_level="AUTOCOMMIT",
        pool_recycle=1800,
        hide_parameters=True,
    )


def ingestion(request: Request) -> Ingestion:
    found: Ingestion | None = getattr(request.app.state, "usage_ingestion", None)
    if found is None:
        engine = usage_engine(request.app.state.settings.effective_database_url)
        found = Ingestion(PostgresUsageSink(engine), request.app.state.sessions)
        request.app.state.usage_ingestion = found
    return found


def _size(properties: dict[str, Any]) -> int:
    """About the size of `properties` as JSON (exact enough for a limit; cheap for the usual
    flat object of numbers and short strings)."""
    size = 2
    for key, value in properties.items():
        size += len(key) + 4
        if isinstance(value, str):
            size += len(value) + 2
        elif isinstance(value, int | float | bool) or value is None:
            size += 24
        else:
            size += len(json.dumps(value))
    return size


# A forbidden character (api.input_guard) can reach a parsed JSON string only as an escape
# (\b \f \n \r or \u....) or raw as DEL, a C1 control or U+2028/9 in UTF-8 (raw C0
# controls inside strings are not JSON). A batch whose raw body has none of these skips
# the walk over every string of every event; any hit (even a harmless \u00e9) walks.
_SUSPECT = re.compile(rb"\\[bfnru]|\x7f|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]")


def event_in(body: UsageEventFields) -> EventIn:
    if _size(body.properties) > MAX_PROPERTIES_BYTES:
        raise errors.INVALID_PROPERTY(f"properties take more than {MAX_PROPERTIES_BYTES} bytes")
    return EventIn(
        body.transaction_id, body.customer_id, body.event_name, body.timestamp, body.properties
    )


_INGEST_ROLES = frozenset({Role.ADMIN, Role.PRODUCT})
# The body, documented by hand: the route reads it itself (see below).
_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": UsageEventIn.model_json_schema()}},
    }
}


@router.post("", status_code=202, response_model=UsageEventAccepted, openapi_extra=_BODY)
async def record_event(request: Request) -> Response:
    """Record one usage event (product). Sent again with the same transaction id: 202 with
    `duplicate: true` and the first one's id.

    Like the entitlement check, this route does by hand what dependencies and the response
    model would do (they are a large share of a single event's CPU time)."""
    principal = await current_principal(request)
    if principal.role not in _INGEST_ROLES:
        raise errors.FORBIDDEN(f"The {principal.role.value} role may not do this")
    try:
        raw = json.loads(await request.body())
    except ValueError:
        raise errors.INVALID_JSON("The request body is not valid JSON") from None
    try:
        body = UsageEventIn.model_validate(raw)
    except ValidationError as err:
        raise describe_errors(err.errors()) from None
    single = await ingestion(request).ingest_one(event_in(body))
    if (rejection := single.rejection) is not None:
        raise errors.DECLARED[rejection.code](rejection.message)
    event_id, duplicate = single.event_id, False
    if event_id is None:
        engine = usage_engine(request.app.state.settings.effective_database_url)
        async with engine.connect() as conn:
            event_id = await usage.existing_id(conn, body.customer_id, body.transaction_id)
        duplicate = True
    answer = json.dumps({"id": event_id or "", "duplicate": duplicate}, separators=(",", ":"))
    return Response(answer.encode(), status_code=202, media_type="application/json")


@router.post("/batch", status_code=202, response_model=UsageBatchOut)
async def record_batch(body: UsageBatchIn, request: Request, _: ProductKey) -> object:
    """Record up to 1,000 usage events; each is accepted, a duplicate, or rejected."""
    events: list[tuple[int, EventIn]] = []
    invalid: list[Rejected] = []
    clean = _SUSPECT.search(await request.body()) is None
    model = UsageEventFields if clean else UsageEventIn
    for index, raw in enumerate(body.events):
        try:
            events.append((index, event_in(model.model_validate(raw))))
        except ValidationError as err:
            refused = describe_errors(err.errors())
            invalid.append(Rejected(index=index, code=refused.code, message=refused.message))
        except DomainError as err:
            invalid.append(Rejected(index=index, code=err.code, message=err.message))
    outcome = await ingestion(request).ingest(events, datetime.now(UTC)) if events else None
    rejected = invalid + [
        Rejected(index=r.index, code=r.code, message=r.message)
        for r in (outcome.rejected if outcome else [])
    ]
    rejected.sort(key=lambda r: r.index)
    return UsageBatchOut(
        accepted=outcome.accepted if outcome else 0,
        duplicates=outcome.duplicates if outcome else 0,
        rejected=rejected,
    )
