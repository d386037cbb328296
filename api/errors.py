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

from domain import errors
from domain.errors import DomainError

log = structlog.get_logger()


class ErrorBody(BaseModel):
    code: str = Field(description="Stable, machine-readable reason, e.g. `resource_missing`")
    message: str = Field(description="What went wrong, for a person to read")


class ErrorResponse(BaseModel):
    """The body of every error answer, whatever its status."""

    error: ErrorBody


def not_found(kind: str, ident: str) -> DomainError:
    return errors.RESOURCE_MISSING(f"No {kind} with id {ident!r}")


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def domain_response(err: DomainError) -> JSONResponse:
    response = error_response(err.http_status, err.code, err.message)
    response.headers.update(err.headers or {})
    return response


def from_update_failure(err: WorkflowUpdateFailedError) -> DomainError:
    """A rejected workflow update (validator or handler) as the API error it stands for."""
    cause: BaseException | None = err.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    if isinstance(cause, ApplicationError) and cause.type:
        status = cause.details[0] if cause.details and isinstance(cause.details[0], int) else 409
        return DomainError(cause.type, cause.message, status)
    return errors.UPDATE_REJECTED(str(err.cause or err))


def from_rpc_error(err: RPCError) -> DomainError:
    if err.status == RPCStatusCode.NOT_FOUND:
        return errors.SUBSCRIPTION_NOT_RUNNING("The subscription's workflow has ended")
    if err.status == RPCStatusCode.ALREADY_EXISTS:
        return errors.ALREADY_EXISTS(err.message)
    raise err


# Validation errors with a code of their own (raised as PydanticCustomError in api.schemas);
# every other one is a `validation_error`.
OWN_CODES = {
    e.code for e in (errors.INVALID_CHARACTERS, errors.DUPLICATE_FEATURES, errors.TIME_OUT_OF_RANGE)
}


def _describe(exc: RequestValidationError) -> DomainError:
    found = exc.errors()
    if any(e.get("type") == "json_invalid" for e in found):
        return errors.INVALID_JSON("The request body is not valid JSON")
    own = [e for e in found if e.get("type") in OWN_CODES]
    first = own[0] if own else found[0] if found else {}
    code = errors.DECLARED[str(first.get("type"))] if own else errors.VALIDATION_ERROR
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = str(first.get("msg", "invalid value"))
    return code(f"{where}: {message}" if where else message)


def describe_errors(found: Sequence[Any]) -> DomainError:
    """Validation errors (pydantic's `errors()`) as the error answered for them."""
    return _describe(RequestValidationError(found))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return domain_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return domain_response(_describe(exc))

    @app.exception_handler(WorkflowUpdateFailedError)
    async def _update_failed(_: Request, exc: WorkflowUpdateFailedError) -> JSONResponse:
        return domain_response(from_update_failure(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("api.unhandled_error", path=request.url.path)
        return error_response(500, "internal_error", "An unexpected error occurred")
