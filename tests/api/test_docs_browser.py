"""`/docs` in a real browser, offline: headless Chromium (Debian's package, tests/browser.py)
opens Swagger UI from a real uvicorn server on 127.0.0.1, authorizes with the admin key,
runs GET /v1/plans with "Try it out" → "Execute" and sees the 200.

Every request the page makes that is not to the server is refused (as it would fail on a
machine without internet) and recorded: the page must work without one and make none.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from playwright.async_api import Request, Route, async_playwright, expect

from api.app import create_app
from devstack.process import free_port
from tests.browser import chromium_path
from tests.conftest import ADMIN_KEY, Stack
from tests.helpers import serving


@pytest.fixture(scope="session")
def chromium() -> Iterator[str]:
    yield chromium_path()


@pytest.fixture(scope="module")
async def docs_server(stack: Stack, app_client: httpx.AsyncClient) -> AsyncIterator[str]:
    """The API under uvicorn on a loopback port (app_client has made the admin key)."""
    port = free_port()
    settings = stack.settings.model_copy(update={"api_port": port, "api_host": "127.0.0.1"})
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    await serving(base)
    yield base
    server.should_exit = True
    await asyncio.to_thread(thread.join, 10)


async def test_docs_authorize_and_try_a_request_offline(docs_server: str, chromium: str) -> None:
    host = urlsplit(docs_server).netloc
    outside: list[str] = []
    plans_auth: list[str | None] = []

    async def offline(route: Route) -> None:
        if urlsplit(route.request.url).netloc == host:
            await route.continue_()
        else:
            await route.abort("internetdisconnected")

    def watch(request: Request) -> None:
        url = urlsplit(request.url)
        if url.scheme not in ("data", "blob") and url.netloc != host:
            outside.append(request.url)
        if url.path == "/v1/plans":
            plans_auth.append(request.headers.get("authorization"))

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = await browser.new_page()
            page.on("request", watch)
            await page.route("**/*", offline)
            await page.goto(f"{docs_server}/docs")

            await page.get_by_role("button", name="Authorize").first.click()
            dialog = page.locator(".modal-ux")
            await dialog.locator("input").first.fill(ADMIN_KEY)
            await dialog.get_by_role("button", name="Apply credentials").click()
            await expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
            await dialog.get_by_role("button", name="Close").click()

            operation = page.locator("#operations-plans-list_plans_v1_plans_get")
            await operation.locator(".opblock-summary").first.click()
            await operation.get_by_role("button", name="Try it out").click()
            await operation.get_by_role("button", name="Execute").click()
            status = operation.locator(".live-responses-table .response .response-col_status")
            await expect(status.first).to_have_text("200", timeout=30_000)
        finally:
            await browser.close()

    assert plans_auth == [f"Bearer {ADMIN_KEY}"]
    assert outside == [], f"the docs page reached outside {host}: {outside}"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_only_the_projects_own_files(
    app_client: httpx.AsyncClient, page: str
) -> None:
    html = (await app_client.get(page, headers={"Authorization": ""})).text
    assert re.findall(r"https?://", html) == []
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/static/docs/") for a in assets), assets
    for asset in assets:
        answer = await app_client.get(asset)
        assert answer.status_code == 200 and len(answer.content) > 1000, asset
