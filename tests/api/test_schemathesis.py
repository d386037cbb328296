"""Schemathesis over the app's own OpenAPI document, with a key of each role: whatever it
sends (valid and invalid bodies, path ids, query parameters), no answer is a 5xx.

The app runs in-process (Schemathesis's ASGI transport, its own event loop thread, its own
lifespan) on a database of its own, so the plans, customers, clocks, keys and webhook
endpoints it creates never reach the rest of the suite. Nothing is excluded: every
operation runs in-process. Calls that would wait on a workflow cannot reach one (the
fuzzer cannot guess an existing subscription's id), so no worker is needed.

Examples are bounded (25 per operation and role, plus Schemathesis's coverage cases) to keep
the module to a couple of minutes; they are drawn at random, so each run explores more (a
failure prints its seed and the request to reproduce it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from sqlalchemy.ext.asyncio import create_async_engine

from api.app import create_app
from api.bootstrap import ensure_admin_key
from config import Settings
from db.migrate import upgrade
from tests.conftest import ADMIN_KEY, Stack

ROLES = ("admin", "product", "support")


def _database(url: str) -> Iterator[str]:
    """A fresh, migrated database on the session's server; dropped after the module."""
    name = f"recur_fuzz_{uuid.uuid4().hex[:8]}"
    server = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    fuzz_url = url.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(fuzz_url)
        yield fuzz_url
    finally:
        asgi.shutdown_lifespans()  # the app's pool closes before its database goes
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def fuzz_url(stack: Stack) -> Iterator[str]:
    yield from _database(stack.settings.effective_database_url)


@pytest.fixture(scope="module")
def fuzz_client(stack: Stack, fuzz_url: str) -> Iterator[asgi.ASGIClient]:
    """The app on its own database, started (lifespan) in Schemathesis's ASGI loop."""

    async def admin_key() -> None:
        engine = create_async_engine(fuzz_url)
        try:
            await ensure_admin_key(engine, ADMIN_KEY)
        finally:
            await engine.dispose()

    # A loop of its own (this fixture is synchronous), leaving the suite's loop as it is.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(admin_key())
    finally:
        loop.close()
    app = create_app(stack.settings.model_copy(update={"database_url": fuzz_url}))
    with asgi.get_client(app) as client:
        yield client


@pytest.fixture(scope="module")
def role_keys(fuzz_client: asgi.ASGIClient) -> dict[str, str]:
    keys = {"admin": ADMIN_KEY}
    for role in ROLES[1:]:
        created = fuzz_client.post(
            "/v1/api_keys",
            json={"role": role, "name": f"fuzz {role}"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert created.status_code == 201, created.text
        keys[role] = created.json()["key"]
    return keys


@pytest.fixture(params=ROLES)
def role(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# The OpenAPI document is built without starting the app (no database, no Temporal), so the
# operations are known when pytest collects: one test per operation and role.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=False,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_is_a_server_error(
    case: schemathesis.Case, role: str, role_keys: dict[str, str], fuzz_client: asgi.ASGIClient
) -> None:
    response = case.call(
        base_url=fuzz_client.base_url,
        session=fuzz_client,
        headers={"Authorization": f"Bearer {role_keys[role]}"},
    )
    case.validate_response(response, checks=[not_a_server_error])
