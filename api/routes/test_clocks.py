"""Test clocks (sandbox only): frozen time that subscriptions on the clock live by."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from fastapi import APIRouter

from api.deps import ProductKey, SessionDep, SettingsDep, TemporalDep
from api.errors import not_found
from api.idempotency import IdempotencyDep
from api.ids import new_id
from api.operator_schemas import AdvanceFailureOut, TestClockAdvance, TestClockCreate, TestClockOut
from api.services import test_clocks as service
from db.models import TestClock
from db.repositories import test_clocks
from domain import errors

router = APIRouter(prefix="/v1/test_clocks", tags=["test clocks"])


def _sandbox_only(settings: SettingsDep) -> None:
    if not settings.sandbox:
        raise errors.NOT_FOUND("Test clocks exist only when RECUR_SANDBOX=true")


@router.post("", status_code=201, response_model=TestClockOut)
async def create_clock(
    body: TestClockCreate,
    idem: IdempotencyDep,
    session: SessionDep,
    settings: SettingsDep,
    key: ProductKey,
) -> object:
    _sandbox_only(settings)
    if (replay := await idem.replay()) is not None:
        return replay
    now = datetime.now(UTC)
    clock = TestClock(
        id=new_id("clock"),
        name=body.name,
        frozen_time=(body.frozen_time or now).astimezone(UTC),
        created_at=now,
    )
    test_clocks.add(session, clock)
    return await idem.respond(201, TestClockOut.model_validate(clock, from_attributes=True))


@router.get("/{clock_id}", response_model=TestClockOut)
async def get_clock(
    clock_id: str, session: SessionDep, settings: SettingsDep, _: ProductKey
) -> object:
    _sandbox_only(settings)
    clock = await test_clocks.get(session, clock_id)
    if clock is None:
        raise not_found("test clock", clock_id)
    return clock


@router.post("/{clock_id}/advance", response_model=TestClockOut)
async def advance_clock(
    clock_id: str,
    body: TestClockAdvance,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    _: ProductKey,
) -> object:
    """Move the clock forward; answers once every attached subscription has caught up.

    Sending the clock's current time again finishes an advance that was cut short (a
    timeout, a crash of the API). Subscriptions still behind at the deadline are listed in
    `advance_failures`; the clock stays `advancing` and the API's sweeper finishes it."""
    _sandbox_only(settings)
    clock = await test_clocks.get(session, clock_id)
    if clock is None:
        raise not_found("test clock", clock_id)
    to = body.frozen_time.astimezone(UTC)
    if to < clock.frozen_time:
        raise errors.INVALID_FROZEN_TIME("frozen_time must not be before the clock's current time")
    failures = await service.advance(session, temporal, settings, clock, to)
    out = TestClockOut.model_validate(clock, from_attributes=True)
    out.advance_failures = [AdvanceFailureOut(**asdict(f)) for f in failures]
    return out
