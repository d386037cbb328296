"""`Idempotency-Key` for creating POSTs: same key + same body replays the stored response;
same key + another body is a 409."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.dialects.postgresql import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from api.auth import Principal
from api.errors import ApiError
from db.models import IdempotencyRecord


class Idempotency:
    """Use as: `replay = await idem.replay()`; … ; `return await idem.respond(status, body)`."""

    def __init__(self, request: Request, session: AsyncSession, principal: Principal) -> None:
        self._request = request
        self._session = session
        self._principal = principal
        self.key = request.headers.get("idempotency-key")
        self._hash = ""

    async def replay(self) -> JSONResponse | None:
        if self.key is None:
            return None
        if not 1 <= len(self.key) <= 255:
            raise ApiError(
                400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 characters"
            )
        body = await self._request.body()
        self._hash = hashlib.sha256(self._request.url.path.encode() + b"\0" + body).hexdigest()
        record = await self._session.get(IdempotencyRecord, (self._principal.key_id, self.key))
        if record is None:
            return None
        if record.request_hash != self._hash:
            raise ApiError(
                409,
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request",
            )
        return JSONResponse(status_code=record.status_code, content=record.response_body)

    async def respond(self, status: int, body: Any) -> JSONResponse:
        content = jsonable_encoder(body)
        if self.key is not None:
            await self._session.execute(
                insert(IdempotencyRecord)
                .values(
                    api_key_id=self._principal.key_id,
                    key=self.key,
                    method=self._request.method,
                    path=self._request.url.path,
                    request_hash=self._hash,
                    status_code=status,
                    response_body=content,
                    created_at=datetime.now(UTC),
                )
                .on_conflict_do_nothing()
            )
            await self._session.commit()
        return JSONResponse(status_code=status, content=content)
