"""Meters: what usage events count, and how (sum, count, max, last, unique_count)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from api.deps import AdminKey, CurrentKey, SessionDep
from api.errors import not_found
from api.idempotency import IdempotencyDep
from api.ids import new_id
from api.usage_schemas import MeterCreate, MeterOut
from db.repositories import meters
from db.usage_tables import Meter
from domain import errors

router = APIRouter(prefix="/v1/meters", tags=["usage"])


@router.post("", status_code=201, response_model=MeterOut)
async def create_meter(
    body: MeterCreate, idem: IdempotencyDep, session: SessionDep, _: AdminKey
) -> object:
    """Create a meter (admin). `id` is optional (`meter_…` when absent)."""
    if (replay := await idem.replay()) is not None:
        return replay
    meter_id = body.id or new_id("meter")
    meter = Meter(id=meter_id, created_at=datetime.now(UTC), **body.model_dump(exclude={"id"}))
    if not await meters.insert_new(session, meter):
        raise errors.METER_EXISTS(f"A meter with id {meter_id!r} exists")
    return await idem.respond(201, MeterOut.model_validate(meter, from_attributes=True))


@router.get("", response_model=list[MeterOut])
async def list_meters(session: SessionDep, _: CurrentKey) -> object:
    return await meters.all_meters(session)


@router.get("/{meter_id}", response_model=MeterOut)
async def get_meter(meter_id: str, session: SessionDep, _: CurrentKey) -> object:
    meter = await meters.get(session, meter_id)
    if meter is None:
        raise not_found("meter", meter_id)
    return meter
