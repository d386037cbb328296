"""How business-rule rejections leave a workflow: as non-retryable application errors.

The error `type` carries the domain code and the first detail the HTTP status, both taken
from the `DomainError` (`domain.errors`), so the API answers with the same
`{"error": {"code", "message"}}` and status whoever raised it.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from domain.errors import DomainError


def rejected(err: DomainError) -> ApplicationError:
    return ApplicationError(err.message, err.http_status, type=err.code, non_retryable=True)
