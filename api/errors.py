"""One error shape for every failure: `{"error": {"code", "message"}}` with a 4xx status."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain.errors import DomainError

log = structlog.get_logger()


class ErrorBody(BaseModel):
    code: str = Field(description="Stable, machine-readable reason, e.g. `resource_missing`")
    message: str = Field(description="What went wrong, for a person to read")


class ErrorResponse(BaseModel):
    """The body of every error answer, whatever its status."""

    error: ErrorBody


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, "resource_missing", f"No {kind} with id {ident!r}")


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def from_update_failure(err: WorkflowUpdateFailedError) -> ApiError:
    """A rejected workflow update (validator or handler) as the API error it stands for."""
    cause: BaseException | None = err.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    if isinstance(cause, ApplicationError) and cause.type:
        status = cause.details[0] if cause.details and isinstance(cause.details[0], int) else 409
        return ApiError(status, cause.type, cause.message)
    return ApiError(409, "update_rejected", str(err.cause or err))


def from_rpc_error(err: RPCError) -> ApiError:
    if err.status == RPCStatusCode.NOT_FOUND:
        return ApiError(409, "subscription_not_running", "The subscription's workflow has ended")
    if err.status == RPCStatusCode.ALREADY_EXISTS:
        return ApiError(409, "already_exists", err.message)
    raise err


# Validation errors with a code of their own (raised as PydanticCustomError in api.schemas);
# every other one is a `validation_error`.
OWN_CODES = {"invalid_characters", "duplicate_features", "time_out_of_range"}


def _describe(exc: RequestValidationError) -> tuple[int, str, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "invalid_json", "The request body is not valid JSON"
    own = [e for e in errors if e.get("type") in OWN_CODES]
    first = own[0] if own else errors[0] if errors else {}
    code = str(first.get("type")) if own else "validation_error"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = str(first.get("msg", "invalid value"))
    return 422, code, f"{where}: {message}" if where else message


def describe_errors(errors: Sequence[Any]) -> tuple[int, str, str]:
    """Validation errors (pydantic's `errors()`) as the status, code and message answered."""
    return _describe(RequestValidationError(errors))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        response = error_response(exc.status, exc.code, exc.message)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return error_response(exc.http_status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message = _describe(exc)
        return error_response(status, code, message)

    @app.exception_handler(WorkflowUpdateFailedError)
    async def _update_failed(_: Request, exc: WorkflowUpdateFailedError) -> JSONResponse:
        err = from_update_failure(exc)
        return error_response(err.status, err.code, err.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api.unhandled_error", path=request.url.path)
        return error_response(500, "internal_error", "An unexpected error occurred")
