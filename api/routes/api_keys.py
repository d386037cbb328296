"""API keys (admin): create (the key is shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api import key_admin
from api.deps import AdminKey, SessionDep
from api.errors import not_found
from api.idempotency import IdempotencyDep
from api.operator_schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut

router = APIRouter(prefix="/v1/api_keys", tags=["api keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_key(
    body: ApiKeyCreate, idem: IdempotencyDep, session: SessionDep, key: AdminKey
) -> object:
    if (replay := await idem.replay()) is not None:
        return replay
    row, raw = await key_admin.create(session, body.role, body.name)
    out = ApiKeyCreated(**ApiKeyOut.model_validate(row, from_attributes=True).model_dump(), key=raw)
    # The key is shown once: a replay of this request answers with `key: null`.
    return await idem.respond(201, out, secret="key")


@router.get("", response_model=list[ApiKeyOut])
async def list_keys(session: SessionDep, _: AdminKey) -> object:
    return await key_admin.all_keys(session)


@router.delete("/{key_id}", response_model=ApiKeyOut)
async def revoke_key(key_id: str, request: Request, session: SessionDep, _: AdminKey) -> object:
    row = await key_admin.revoke_now(session, request.app.state.key_cache, key_id)
    if row is None:
        raise not_found("API key", key_id)
    return row
