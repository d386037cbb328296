"""No control characters in anything the API takes: ids in the path, query parameters, the
`Idempotency-Key` header and (through `api.schemas.Input`) every string of a JSON body.

PostgreSQL refuses a NUL in text, so one that reached a query was a 500 (for a new customer:
after its Stripe customer was made); a CR/LF in a name ends up in email headers. The path,
query and header are checked here, before routing, so no handler (and no side effect) ever
runs with one; the answer is a 422 `invalid_characters`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response

# C0 controls except TAB, DEL, the C1 controls, and the Unicode line and paragraph separators
# (Python's str.splitlines, and so email header code, breaks lines at several of them).
FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# In a header (latin-1 on the wire): what PostgreSQL or a log line would choke on.
_HEADER_FORBIDDEN = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# In a raw query string: a byte that is not printable ASCII, or an escape. Only then (rare)
# is the query decoded and checked.
_RAW_SUSPECT = re.compile(rb"[\x00-\x1f\x7f-\xff%]")
CODE = "invalid_characters"


def has_forbidden(value: str) -> bool:
    return FORBIDDEN.search(value) is not None


def first_forbidden(value: Any, where: str = "") -> str | None:
    """Where in a JSON-like value (str, list, dict) a forbidden character is, or None."""
    if isinstance(value, str):
        return (where or "value") if has_forbidden(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and has_forbidden(key):
                return path
            if (found := first_forbidden(item, path)) is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if found := first_forbidden(item, f"{where}.{index}" if where else str(index)):
                return found
    return None


def message(where: str) -> str:
    return f"{where}: control characters (NUL, CR, LF, ...) are not allowed"


def _query_is_clean(raw: bytes) -> bool:
    if _RAW_SUSPECT.search(raw) is None:
        return True
    # Escapes and raw bytes alike read as UTF-8, as the values are.
    decoded = unquote_to_bytes(raw).decode("utf-8", errors="replace")
    return not has_forbidden(decoded)


class InputGuardMiddleware:
    """Plain ASGI (the entitlement check is a hot path): one regex over the path and one
    over the raw query string per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = None
            if has_forbidden(scope["path"]):
                where = "path"
            elif not _query_is_clean(scope.get("query_string", b"")):
                where = "query"
            else:
                for name, value in scope["headers"]:
                    if name == b"idempotency-key" and _HEADER_FORBIDDEN.search(value):
                        where = "header.Idempotency-Key"
            if where is not None:
                await error_response(422, CODE, message(where))(scope, receive, send)
                return
        await self.app(scope, receive, send)
