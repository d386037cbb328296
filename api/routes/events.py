"""The timeline of lifecycle events, oldest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CurrentKey, SessionDep
from api.schemas import EventOut
from db.repositories import events
from domain import errors

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.get("", response_model=list[EventOut])
async def list_events(
    session: SessionDep,
    _: CurrentKey,
    subscription_id: str | None = None,
    customer_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> object:
    if not subscription_id and not customer_id:
        raise errors.VALIDATION_ERROR("Pass subscription_id or customer_id")
    return await events.timeline(
        session, subscription_id=subscription_id, customer_id=customer_id, limit=limit
    )
