"""A real HTTP webhook receiver for tests: aiohttp on 127.0.0.1, a free port, loopback only.

It verifies every request's Standard Webhooks signature with the endpoint secret, as a
receiver would, with the `standardwebhooks` library; it can answer 500 for the first N
requests (of one customer's events), and records what it accepted in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from devstack.process import free_port
from tests.helpers import eventually


@dataclass
class Receiver:
    secret: str = ""
    fail_first: int = 0
    # Only requests for this customer count towards (and get) the deliberate 500s.
    fail_customer: str | None = None
    port: int = 0
    accepted: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    failed_on_purpose: int = 0
    bad_signatures: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        try:
            payload = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=400, text="bad signature")
        targeted = self.fail_customer in (None, payload["data"].get("customer_id"))
        if targeted and self.failed_on_purpose < self.fail_first:
            self.failed_on_purpose += 1
            return web.Response(status=500, text="try again")
        payload["_attempt"] = request.headers.get("Recur-Delivery-Attempt")
        payload["_webhook_id"] = request.headers.get("webhook-id")
        self.accepted.append(payload)
        return web.Response(status=204)

    def for_subscription(self, subscription_id: str) -> list[dict[str, Any]]:
        return [p for p in self.accepted if p["data"].get("subscription_id") == subscription_id]

    def first_seen_ids(self, subscription_id: str) -> list[str]:
        """Event ids in the order they first arrived (duplicates dropped)."""
        return list(dict.fromkeys(p["id"] for p in self.for_subscription(subscription_id)))

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        await eventually(predicate, timeout=timeout, what="a condition on the webhooks received")
