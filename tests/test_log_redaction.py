"""Secrets stay out of logs, tracebacks and SQLAlchemy's bound parameters included, whatever
logged them: structlog, the standard library's loggers, or uvicorn for an unhandled error.

Every test logs through the real configuration (`config.configure_logging`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
import structlog
import uvicorn
from fastapi import Request
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api.app import create_app
from config import Settings, configure_logging
from db.delivery_tables import WebhookEndpoint
from db.engine import get_engine, get_read_engine, get_worker_engine
from devstack.process import free_port
from tests.conftest import Stack
from tests.helpers import serving

SIGNING_SECRET = "whsec_" + "7f3a+9c/Q" * 4 + "Zm8="
CARD_NUMBER = "4242424242424242"
PAYMENT_METHOD = "pm_1QxYz2AbCdEfGhIjKlMnOpQr"
# Looks like nothing a pattern would catch: only hiding the parameters keeps it out.
PASSPHRASE = "correct-horse-battery-staple"
LEAKS = (SIGNING_SECRET, CARD_NUMBER, PAYMENT_METHOD, PASSPHRASE)


def _assert_clean(out: str) -> None:
    for value in LEAKS:
        assert value not in out, f"{value} reached the log:\n{out}"


def _endpoint_row(endpoint_id: str) -> dict[str, object]:
    return {
        "id": endpoint_id,
        "url": "https://hooks.example/recur",
        "events": ["*"],
        "secret": SIGNING_SECRET,
        "description": f"{PASSPHRASE} card {CARD_NUMBER} via {PAYMENT_METHOD}",
        "disabled": False,
        "created_at": datetime.now(UTC),
    }


async def _duplicate_insert(engine: AsyncEngine) -> IntegrityError:
    """A real constraint violation whose statement carries the secrets as bound parameters."""
    endpoint_id = f"we_redact_{uuid.uuid4().hex[:10]}"
    statement = insert(WebhookEndpoint)
    async with engine.begin() as conn:
        await conn.execute(statement, _endpoint_row(endpoint_id))
    try:
        async with engine.begin() as conn:
            await conn.execute(statement, _endpoint_row(endpoint_id))
    except IntegrityError as exc:
        return exc
    raise AssertionError("the duplicate insert succeeded")


def test_a_logged_traceback_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_json=True, log_level="INFO"))
    try:
        raise ValueError(f"card {CARD_NUMBER} with {PAYMENT_METHOD} signed by {SIGNING_SECRET}")
    except ValueError:
        structlog.get_logger().exception("charge.crashed", amount=1500)
    out = capsys.readouterr().out
    assert "charge.crashed" in out and "ValueError" in out, "the traceback is still logged"
    _assert_clean(out)


def test_the_console_renderer_redacts_tracebacks_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_json=False, log_level="INFO"))
    try:
        try:
            raise ValueError(f"card {CARD_NUMBER} with {PAYMENT_METHOD} signed by {SIGNING_SECRET}")
        except ValueError:
            structlog.get_logger().exception("charge.crashed")
        out = capsys.readouterr().out
        assert "charge.crashed" in out and "ValueError" in out
        _assert_clean(out)
    finally:
        configure_logging(Settings(log_json=True, log_level="INFO"))


@pytest.mark.parametrize("name", ["uvicorn.error", "temporalio.activity", "sqlalchemy.engine"])
def test_standard_library_loggers_are_redacted(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(Settings(log_json=True, log_level="INFO"))
    try:
        raise RuntimeError(f"{SIGNING_SECRET} {CARD_NUMBER} {PAYMENT_METHOD}")
    except RuntimeError:
        logging.getLogger(name).exception("failed for %s", PAYMENT_METHOD)
    out = capsys.readouterr().out
    assert "RuntimeError" in out and name in out
    _assert_clean(out)


@pytest.mark.parametrize(
    "engine_for",
    [get_engine, get_worker_engine, get_read_engine],
    ids=["api", "worker", "read"],
)
async def test_database_errors_never_carry_bound_parameters(
    stack: Stack,
    engine_for: Callable[[str], AsyncEngine],
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = await _duplicate_insert(engine_for(stack.settings.effective_database_url))
    assert "SQL parameters hidden" in str(error)
    _assert_clean(str(error))
    configure_logging(Settings(log_json=True, log_level="INFO"))
    try:
        raise error
    except IntegrityError:
        structlog.get_logger().exception("db.failed")
    out = capsys.readouterr().out
    assert "IntegrityError" in out
    _assert_clean(out)


async def test_an_unhandled_api_error_is_logged_redacted_by_the_api_and_uvicorn(
    stack: Stack, temporal_client: Client, capfd: pytest.CaptureFixture[str]
) -> None:
    """A 500 from a real uvicorn server (its own logging configuration, as `recur api`
    runs it): the API's log line and uvicorn's "Exception in ASGI application" both carry
    the traceback of a database error, and neither carries a secret."""
    settings = stack.settings.model_copy(update={"log_level": "INFO"})
    app = create_app(settings, temporal=temporal_client)

    @app.post("/test/boom")
    async def boom(request: Request) -> None:
        async with request.app.state.sessions() as session:
            raise await _duplicate_insert(session.bind)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        await serving(f"http://127.0.0.1:{port}")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post("/test/boom")
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "internal_error"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)
        configure_logging(stack.settings)
    captured = capfd.readouterr()
    out = captured.out + captured.err
    assert "api.unhandled_error" in out
    assert "Exception in ASGI application" in out
    assert out.count("IntegrityError") >= 2, "both tracebacks are logged"
    _assert_clean(out)
