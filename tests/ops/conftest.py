"""A real API server on a loopback port, for tests that drive Recur from the outside."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from api.app import create_app
from devstack.process import free_port
from tests.conftest import ADMIN_KEY, Stack
from tests.helpers import serving
from worker import WorkerParts


@dataclass
class LiveApi:
    base_url: str
    env: dict[str, str]


@pytest.fixture(scope="session")
async def live_api(
    stack: Stack, worker_parts: WorkerParts, app_client: httpx.AsyncClient
) -> AsyncIterator[LiveApi]:
    port = free_port()
    settings = stack.settings.model_copy(update={"api_port": port, "api_host": "127.0.0.1"})
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    await serving(f"http://127.0.0.1:{port}")
    s = stack.settings
    env = {
        **os.environ,
        "RECUR_API_HOST": "127.0.0.1",
        "RECUR_API_PORT": str(port),
        "RECUR_ADMIN_KEY": ADMIN_KEY,
        "RECUR_DATABASE_URL": s.effective_database_url,
        "RECUR_TEMPORAL_ADDRESS": s.temporal_address,
        "RECUR_STRIPE_API_BASE": s.effective_stripe_api_base or "",
        "RECUR_TASK_QUEUE": s.task_queue,
        "RECUR_LOG_LEVEL": "WARNING",
    }
    yield LiveApi(base_url=f"http://127.0.0.1:{port}", env=env)
    server.should_exit = True
    await asyncio.to_thread(thread.join, 10)
