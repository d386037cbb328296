"""The hot path: may this customer use this feature?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CurrentKey, SessionDep
from api.schemas import EntitlementCheck
from db.repositories import entitlements

router = APIRouter(prefix="/v1/entitlements", tags=["entitlements"])


@router.get("/check", response_model=EntitlementCheck)
async def check(
    customer_id: Annotated[str, Query(min_length=1, max_length=200)],
    feature: Annotated[str, Query(min_length=1, max_length=100)],
    session: SessionDep,
    _: CurrentKey,
) -> EntitlementCheck:
    """One indexed lookup; no Temporal call."""
    entitled, active_until = await entitlements.check(session, customer_id, feature)
    return EntitlementCheck(entitled=entitled, active_until=active_until)
