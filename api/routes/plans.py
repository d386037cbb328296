"""Plans: the catalog of prices and the features each grants."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from api.deps import AdminKey, CurrentKey, SessionDep
from api.errors import not_found
from api.idempotency import IdempotencyDep
from api.ids import new_id
from api.schemas import PlanCreate, PlanOut
from db.models import Plan
from db.repositories import plans

router = APIRouter(prefix="/v1/plans", tags=["plans"])


@router.post("", status_code=201, response_model=PlanOut)
async def create_plan(
    body: PlanCreate, idem: IdempotencyDep, session: SessionDep, key: AdminKey
) -> object:
    """Create a plan (admin)."""
    if (replay := await idem.replay()) is not None:
        return replay
    plan = Plan(id=new_id("plan"), created_at=datetime.now(UTC), **body.model_dump())
    plans.add(session, plan)
    return await idem.respond(201, PlanOut.model_validate(plan, from_attributes=True))


@router.get("", response_model=list[PlanOut])
async def list_plans(session: SessionDep, _: CurrentKey) -> object:
    return await plans.catalog(session)


@router.get("/{plan_id}", response_model=PlanOut)
async def get_plan(plan_id: str, session: SessionDep, _: CurrentKey) -> object:
    plan = await plans.get(session, plan_id)
    if plan is None:
        raise not_found("plan", plan_id)
    return plan
