"""The OpenAPI document says what the API does: a bearer scheme on every /v1 operation
("Authorize" in /docs), and every error an operation really answers documented under its
status with the one error body (`{"error": {"code", "message"}}`) and an example of its code.

The second half checks this against the running app: each route of the role matrix
(tests/api/test_roles.py) is called with no key, a wrong role's key and the right one, and
whatever 4xx comes back must be documented, with its code, for that operation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.errors import ErrorResponse
from api.openapi import CODES
from config import Settings
from domain.errors import DECLARED
from tests.api.test_roles import MATRIX

ERROR_REF = "#/components/schemas/ErrorResponse"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if path.startswith("/v1/")
    ]


def test_the_bearer_scheme_is_declared_and_required_by_every_v1_operation(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes == {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "API key",
            "description": schemes["bearer"]["description"],
        }
    }
    operations = _operations(document)
    assert len(operations) >= 30
    for path, method, op in operations:
        assert op.get("security") == [{"bearer": []}], (method, path)
    for public in ("/healthz", "/readyz", "/webhooks/stripe"):
        for op in document["paths"][public].values():
            assert "security" not in op, public


def test_errors_are_documented_in_our_shape_only(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert "detail" not in str(document["paths"])
    assert schemas["ErrorResponse"]["required"] == ["error"]
    assert schemas["ErrorBody"]["required"] == ["code", "message"]
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if int(status) < 400:
                    continue
                content = response["content"]["application/json"]
                assert content["schema"] == {"$ref": ERROR_REF}, (method, path, status)
                assert content["examples"], (method, path, status)
                for name, example in content["examples"].items():
                    body = ErrorResponse.model_validate(example["value"])
                    assert body.error.code == name


def test_401_403_404_409_and_422_are_documented_where_they_can_happen(
    document: dict[str, Any],
) -> None:
    def statuses(method: str, path: str) -> set[str]:
        return set(document["paths"][path][method]["responses"])

    for path, method, _ in _operations(document):
        assert {"401", "429"} <= statuses(method, path), (method, path)
        if "{" in path:
            assert {"404", "422"} <= statuses(method, path), (method, path)
    assert "403" in statuses("post", "/v1/plans")
    assert "403" not in statuses("get", "/v1/plans")  # any role may read the catalog
    for creating in ("/v1/plans", "/v1/customers", "/v1/subscriptions", "/v1/api_keys"):
        assert {"400", "409", "422"} <= statuses("post", creating), creating
    lifecycle = ["change_plan", "cancel", "reactivate", "pause", "resume", "retry_payment"]
    for operation in [*lifecycle, "extend_trial"]:
        path = f"/v1/subscriptions/{{subscription_id}}/{operation}"
        assert {"403", "404", "409", "503"} <= statuses("post", path), operation
        examples = document["paths"][path]["post"]["responses"]["409"]["content"][
            "application/json"
        ]["examples"]
        assert {"subscription_canceled", "subscription_not_running"} <= set(examples)


def _template(document: dict[str, Any], method: str, url: str) -> str:
    path = url.split("?", 1)[0]
    for template in document["paths"]:
        pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in document["paths"][template]:
            return template
    raise AssertionError(f"{method} {url} is not in the OpenAPI document")


def _documented(document: dict[str, Any], method: str, url: str, answer: httpx.Response) -> None:
    template = _template(document, method, url)
    responses = document["paths"][template][method.lower()]["responses"]
    status = str(answer.status_code)
    assert status in responses, f"{method} {url} answered {status}, not documented: {answer.text}"
    code = ErrorResponse.model_validate(answer.json()).error.code
    examples = responses[status]["content"]["application/json"]["examples"]
    assert code in examples, f"{method} {url}: {status} {code} is not documented"


@pytest.fixture(scope="module")
async def keys(app_client: httpx.AsyncClient) -> dict[str, str]:
    out = {"admin": app_client.headers["Authorization"].removeprefix("Bearer ")}
    for role in ("product", "support"):
        created = await app_client.post("/v1/api_keys", json={"role": role, "name": f"doc {role}"})
        assert created.status_code == 201, created.text
        out[role] = created.json()["key"]
    return out


async def test_every_error_the_routes_answer_is_documented(
    app_client: httpx.AsyncClient, document: dict[str, Any], keys: dict[str, str]
) -> None:
    seen: set[int] = set()
    for method, url, _ in MATRIX:
        for key in (None, *keys.values()):
            headers = {"Authorization": f"Bearer {key}" if key else ""}
            answer = await app_client.request(method, url, headers=headers, json={})
            assert answer.status_code < 500, (method, url, answer.text)
            if answer.status_code >= 400:
                _documented(document, method, url, answer)
                seen.add(answer.status_code)
    # A 409 from a real conflict: the same Idempotency-Key with another body.
    idem = {"Idempotency-Key": "openapi-doc-test"}
    plan = {"name": "Doc", "amount": 100, "currency": "usd", "interval": "month"}
    first = await app_client.post("/v1/plans", json=plan, headers=idem)
    assert first.status_code == 201, first.text
    again = await app_client.post("/v1/plans", json={**plan, "amount": 200}, headers=idem)
    assert again.status_code == 409
    _documented(document, "POST", "/v1/plans", again)
    seen.add(409)
    assert {401, 403, 404, 409, 422} <= seen


# Codes raised in the code that no request is answered with, and why.
NOT_ANSWERED = {
    "invalid_currency": "domain.money.format_amount of stored amounts, never a request's",
    "not_on_test_clock": "advance_clock is sent only to subscriptions on a test clock",
}


def test_every_error_code_in_the_code_has_a_documented_example() -> None:
    """Codes are raised through their declarations in `domain.errors` (which carry their
    status), never as literals; a new declaration must be added to api.openapi.CODES (and
    to the operations that answer it) or listed above."""
    literal = re.compile(r'(?:ApiError\(|rejected\(\s*"|DomainError\(\s*")')
    root = Path(__file__).resolve().parents[2]
    raised_by_hand = [
        str(source.relative_to(root))
        for folder in ("api", "workflows", "domain", "activities")
        for source in (root / folder).rglob("*.py")
        if literal.search(source.read_text())
    ]
    assert raised_by_hand == []
    assert len(DECLARED) > 30
    assert set(DECLARED) - set(CODES) - set(NOT_ANSWERED) == set()
    assert set(CODES) <= set(DECLARED)
