"""API keys (admin): create (the key is shown once), list, revoke."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from sqlmodel import col, select

from api.auth import KeyCache, hash_key, new_raw_key
from api.deps import AdminKey, SessionDep
from api.errors import not_found
from api.idempotency import Idempotency
from api.ids import new_id
from api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from db.models import ApiKey

router = APIRouter(prefix="/v1/api_keys", tags=["api keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_key(
    body: ApiKeyCreate, request: Request, session: SessionDep, key: AdminKey
) -> object:
    idem = Idempotency(request, session, key)
    if (replay := await idem.replay()) is not None:
        return replay
    raw = new_raw_key(body.role)
    row = ApiKey(
        id=new_id("key"),
        name=body.name,
        role=body.role.value,
        key_hash=hash_key(raw),
        prefix=raw[:12],
        created_at=datetime.now(UTC),
    )
    session.add(row)
    await session.commit()
    out = ApiKeyCreated(**ApiKeyOut.model_validate(row, from_attributes=True).model_dump(), key=raw)
    return await idem.respond(201, out)


@router.get("", response_model=list[ApiKeyOut])
async def list_keys(session: SessionDep, _: AdminKey) -> object:
    return (await session.exec(select(ApiKey).order_by(col(ApiKey.created_at)))).all()


@router.delete("/{key_id}", response_model=ApiKeyOut)
async def revoke_key(key_id: str, request: Request, session: SessionDep, _: AdminKey) -> object:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise not_found("API key", key_id)
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        session.add(row)
        await session.commit()
    cache: KeyCache = request.app.state.key_cache
    cache.forget(row.key_hash)
    return row
