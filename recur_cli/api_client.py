"""Requests to the running Recur API with the admin key; every failure names the API's
address and maps to an exit code."""

from __future__ import annotations

from typing import Any

import httpx

from config import Settings, get_settings
from recur_cli.exits import CliError, Exit
from recur_cli.output import note

# API error codes that mean the card was refused (exit 5, not "rejected").
DECLINE_CODES = frozenset({"card_declined"})


def api_base(settings: Settings) -> str:
    return f"http://{settings.api_host}:{settings.api_port}"


def call(method: str, path: str, **kwargs: Any) -> Any:
    settings = get_settings()
    base = api_base(settings)
    note(f"{method} {base}{path}")
    headers = {"Authorization": f"Bearer {settings.admin_key}"}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=150) as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as err:
        raise CliError(
            f"cannot reach the Recur API at {base} ({type(err).__name__}: {err}); is `make dev` "
            "running? The address comes from RECUR_API_HOST and RECUR_API_PORT.",
            Exit.UNREACHABLE,
            "api_unreachable",
        ) from None
    if response.status_code < 400:
        return response.json()
    raise _error(response, f"{method} {base}{path}")


def _error(response: httpx.Response, request: str) -> CliError:
    status = response.status_code
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{status}", response.text[:500]
    text = f"{request}: {status} {code}: {message}"
    if status in (401, 403):
        text += " (the key is RECUR_ADMIN_KEY)"
    if status == 404:
        return CliError(text, Exit.NOT_FOUND, code)
    if code in DECLINE_CODES:
        return CliError(text, Exit.DECLINED, code)
    if status < 500:
        return CliError(text, Exit.REJECTED, code)
    if status in (502, 503, 504):
        return CliError(text, Exit.UNREACHABLE, code)
    return CliError(text, Exit.UNEXPECTED, code)
