"""Request ids bound into every log line, and Prometheus metrics for the API."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import ASGIApp

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


def _route_template(request: Request) -> str:
    """The matched route's template (`/v1/subscriptions/{subscription_id}`), never raw ids."""
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


class RequestContextMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        super().__init__(app)
        self.metrics = metrics

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        context: dict[str, str] = {"request_id": request_id}
        if found := _SUBSCRIPTION_IN_PATH.search(request.url.path):
            context["subscription_id"] = found.group(1)
            context["workflow_id"] = f"subscription/{found.group(1)}"
        structlog.contextvars.bind_contextvars(**context)
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = _route_template(request)
        self.metrics.requests.labels(route, request.method, str(response.status_code)).inc()
        self.metrics.latency.labels(route, request.method).observe(elapsed)
        response.headers["x-request-id"] = request_id
        if response.status_code >= 500:
            log.error("api.request_failed", route=route, status=response.status_code)
        return response


def install_observability(app: FastAPI) -> ApiMetrics:
    metrics = ApiMetrics()
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
