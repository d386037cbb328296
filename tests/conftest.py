"""The real stack for integration tests: PostgreSQL, a Temporal dev server, localstripe.

Started once per test session on free ports, torn down at the end. The worker runs in
the test's event loop and the API is called in-process through ASGI, so a test sees
exactly what `make dev` runs, minus the sockets in front of the API.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
    from temporalio.client import Client

    from config import Settings
    from devstack.process import Child
    from worker import WorkerParts

# The stack's modules (the API, the worker, the dev stack) are imported by the fixtures
# that start it, so tests that need none of it (tests/workflows/fast, tests/domain) do
# not pay for importing it.

ADMIN_KEY = "rk_test_admin_0123456789abcdef0123456789"


@dataclass
class Stack:
    settings: Settings
    children: list[Child]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from config import Settings
    from db.migrate import upgrade
    from devstack.postgres import start_postgres
    from devstack.process import free_port
    from devstack.smtp_sink import start_smtp_sink
    from devstack.stripe_fake import start_localstripe
    from devstack.temporal import start_temporal

    base = tmp_path_factory.mktemp("stack")
    children: list[Child] = []
    try:
        pg_port, temporal_port, stripe_port = free_port(), free_port(), free_port()
        children.append(start_postgres(base / "pg", pg_port, base / "postgres.log", durable=False))
        children.append(
            start_temporal(port=temporal_port, ui_port=None, log_path=base / "temporal.log")
        )
        children.append(start_localstripe(port=stripe_port, log_path=base / "localstripe.log"))
        smtp_port = free_port()
        children.append(
            start_smtp_sink(port=smtp_port, maildir=base / "mail", log_path=base / "smtp.log")
        )
        settings = Settings(
            data_dir=base,
            database_url=f"postgresql+psycopg://recur@127.0.0.1:{pg_port}/recur",
            temporal_address=f"127.0.0.1:{temporal_port}",
            stripe_api_base=f"http://127.0.0.1:{stripe_port}",
            task_queue="recur-test",
            admin_key=ADMIN_KEY,
            log_json=True,
            log_level="WARNING",
            smtp_url=f"smtp://127.0.0.1:{smtp_port}",
            # Webhook/email retries back off quickly here (tests answer 500 a few times).
            webhook_retry_initial_ms=100,
            webhook_retry_max_ms=500,
            webhook_max_attempts=8,
            # The test webhook receiver listens on 127.0.0.1 (tests/api/test_webhook_ssrf.py
            # turns this off to prove the guard).
            webhook_allow_private_targets=True,
            # Workflow code always runs in the determinism sandbox here, whatever the
            # environment says: the suite is what catches non-deterministic code.
            workflow_sandbox=True,
            # The suite's in-process client is one address that sends unknown keys on
            # purpose (tests/api/test_roles.py); throttling is tested with an app of its own.
            auth_failure_limit=100_000,
        )
        upgrade(settings.effective_database_url)
        yield Stack(settings=settings, children=children)
    finally:
        for child in reversed(children):
            child.stop()


@pytest.fixture(scope="session")
async def temporal_client(stack: Stack) -> Client:
    from worker import connect_temporal

    return await connect_temporal(stack.settings)


@pytest.fixture(scope="session")
async def worker_parts(stack: Stack, temporal_client: Client) -> AsyncIterator[WorkerParts]:
    from worker import build_worker

    worker, parts = build_worker(temporal_client, stack.settings)
    task = asyncio.create_task(worker.run())
    parts.dispatcher.start()
    yield parts
    await parts.dispatcher.stop()
    await worker.shutdown()
    await asyncio.gather(task, return_exceptions=True)
    await parts.deliveries.aclose()
    await parts.payments.aclose()


@pytest.fixture(scope="session")
async def app_client(
    stack: Stack, temporal_client: Client, worker_parts: WorkerParts
) -> AsyncIterator[httpx.AsyncClient]:
    """An API client authenticated as the bootstrap admin."""
    from api.app import create_app
    from api.bootstrap import ensure_admin_key
    from db.engine import get_engine

    await ensure_admin_key(get_engine(stack.settings.effective_database_url), ADMIN_KEY)
    app = create_app(stack.settings, temporal=temporal_client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://recur.test",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=120,
        ) as client:
            yield client


@pytest.fixture
async def scratch(stack: Stack) -> AsyncIterator[AsyncEngine]:
    """A fresh, migrated database on the session's server, dropped afterwards: for tests
    whose rows the session's worker must not touch (or see)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from db.migrate import upgrade

    url = stack.settings.effective_database_url
    name = f"recur_scratch_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f"CREATE DATABASE {name}"))
    scratch_url = url.rsplit("/", 1)[0] + f"/{name}"
    await asyncio.to_thread(upgrade, scratch_url)
    engine = create_async_engine(scratch_url)
    try:
        yield engine
    finally:
        await engine.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        await admin.dispose()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]
