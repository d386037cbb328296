"""Plans: the catalog of prices and the features each grants."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from api.deps import AdminKey, CurrentKey, SessionDep
from api.errors import not_found
from api.idempotency import IdempotencyDep
from api.ids import new_id
from api.plan_usage import add_limits, feature_keys, plans_out
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
    fields = body.model_dump() | {"features": feature_keys(body)}
    plan = Plan(id=new_id("plan"), created_at=datetime.now(UTC), **fields)
    plans.add(session, plan)
    await add_limits(session, plan.id, body)
    return await idem.respond(201, (await plans_out(session, [plan]))[0])


@router.get("", response_model=list[PlanOut])
async def list_plans(session: SessionDep, _: CurrentKey) -> object:
    return await plans_out(session, await plans.catalog(session))


@router.get("/{plan_id}", response_model=PlanOut)
async def get_plan(plan_id: str, session: SessionDep, _: CurrentKey) -> object:
    plan = await plans.get(session, plan_id)
    if plan is None:
        raise not_found("plan", plan_id)
    return (await plans_out(session, [plan]))[0]
