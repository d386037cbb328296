"""The usage terms of a plan: its meter (a metered plan) and its limited features.

A limited feature is stored twice: its key among the plan's `features` (so the
subscription's entitlements grant it like any other) and a `plan_feature_limits` row with
its meter and limit (what the entitlement check and ingestion read)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from api.errors import not_found
from api.schemas import PlanCreate, PlanOut
from db.models import Plan
from db.repositories import meters
from db.usage_tables import PlanFeatureLimit


async def add_limits(session: AsyncSession, plan_id: str, body: PlanCreate) -> None:
    """Check that every meter named exists (404 otherwise) and add the feature limits."""
    named = {f.meter_id for f in body.features if not isinstance(f, str)}
    if body.meter_id is not None:
        named.add(body.meter_id)
    if missing := await meters.missing(session, named):
        raise not_found("meter", missing[0])
    meters.add_limits(
        session,
        [
            PlanFeatureLimit(
                plan_id=plan_id,
                feature=feature.key,
                meter_id=feature.meter_id,
                usage_limit=feature.limit,
                position=position,
            )
            for position, feature in enumerate(body.features)
            if not isinstance(feature, str)
        ],
    )


def feature_keys(body: PlanCreate) -> list[str]:
    return [f if isinstance(f, str) else f.key for f in body.features]


def plan_out(plan: Plan, limits: Sequence[PlanFeatureLimit]) -> PlanOut:
    by_key = {limit.feature: limit for limit in limits}
    features: list[str | dict[str, object]] = []
    for key in plan.features:
        if (limit := by_key.get(key)) is not None:
            features.append({"key": key, "limit": limit.usage_limit, "meter_id": limit.meter_id})
        else:
            features.append(key)
    out = PlanOut.model_validate(plan, from_attributes=True)
    return out.model_copy(update={"features": features})


async def plans_out(session: AsyncSession, plans: Sequence[Plan]) -> list[PlanOut]:
    limits = await meters.limits_of(session, [p.id for p in plans])
    return [plan_out(p, limits.get(p.id, [])) for p in plans]
