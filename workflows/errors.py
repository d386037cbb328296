"""How business-rule rejections leave a workflow: as non-retryable application errors.

The error `type` carries the domain code and the first detail the HTTP status, so the API
can answer with the same `{"error": {"code", "message"}}` whoever raised it.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from domain.errors import DomainError


def rejected(code: str, message: str, http_status: int = 409) -> ApplicationError:
    return ApplicationError(message, http_status, type=code, non_retryable=True)


def from_domain(err: DomainError) -> ApplicationError:
    return rejected(err.code, err.message, err.http_status)
