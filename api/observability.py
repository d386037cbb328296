"""Request ids bound into every log line, and Prometheus metrics for the API."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger()
_SUBSCRIPTION_IN_PATH = re.compile(r"/v1/subscriptions/(sub_[A-Za-z0-9]+)")


class ApiMetrics:
    """One registry per app, so several apps in one process (tests) do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "recur_api_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recur_api_request_duration_seconds",
            "HTTP request latency by route template",
            ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.orphaned_subscriptions = Gauge(
            "recur_orphaned_subscriptions",
            "Live subscriptions whose workflow has closed (recur subs reconcile repairs them)",
            registry=self.registry,
        )


def _route_template(scope: Scope) -> str:
    """The matched route's template (`/v1/subscriptions/{subscription_id}`), never raw ids."""
    return str(getattr(scope.get("route"), "path", "unmatched"))


class RequestContextMiddleware:
    """Request id and log context, metrics by route template.

    Plain ASGI rather than `BaseHTTPMiddleware`, which runs every request in an extra task
    with memory streams: that alone was about a third of the entitlement check's CPU time.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # (route, method, status) -> its counter and histogram children (a bounded set).
        self._series: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = (
            next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
            or uuid.uuid4().hex
        )
        structlog.contextvars.clear_contextvars()
        context: dict[str, str] = {"request_id": request_id}
        path: str = scope["path"]
        if "/v1/subscriptions/" in path and (found := _SUBSCRIPTION_IN_PATH.search(path)):
            context["subscription_id"] = found.group(1)
            context["workflow_id"] = f"subscription/{found.group(1)}"
        structlog.contextvars.bind_contextvars(**context)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route, method = _route_template(scope), scope["method"]
            key = (route, method, str(status))
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = (
                    self.metrics.requests.labels(*key),
                    self.metrics.latency.labels(route, method),
                )
            series[0].inc()
            series[1].observe(elapsed)
            if status >= 500:
                log.error("api.request_failed", route=route, status=status)


def install_observability(app: FastAPI) -> ApiMetrics:
    metrics = ApiMetrics()
    app.state.metrics = metrics
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
