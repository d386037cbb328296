"""The FastAPI application and its lifespan (database, Temporal client, Stripe, key cache,
the start and test clock sweepers)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from fastapi import FastAPI
from temporalio.client import Client

from activities.stripe_gateway import StripeGateway
from api.auth import KeyCache
from api.auth_throttle import AuthThrottle
from api.clock_sweeper import ClockSweeper
from api.docs_ui import install_docs
from api.errors import install_error_handlers
from api.input_guard import InputGuardMiddleware
from api.observability import install_observability
from api.openapi import install_openapi
from api.orphan_check import OrphanCheck
from api.redemption_sweeper import RedemptionSweeper
from api.routes import (
    api_keys,
    balance,
    coupons,
    customers,
    entitlements,
    events,
    health,
    invoices,
    items,
    meters,
    plans,
    promotion_codes,
    stripe_webhooks,
    subscription_discounts,
    subscription_usage,
    subscriptions,
    test_clocks,
    usage_events,
    webhook_endpoints,
)
from api.start_sweeper import StartSweeper
from config import Settings, configure_logging, get_settings
from db.engine import get_engine, session_factory

log = structlog.get_logger()


def create_app(settings: Settings | None = None, temporal: Client | None = None) -> FastAPI:
    """Build the app; pass `temporal` to share a client (tests), else it connects on start."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings)
        app.state.settings = settings
        app.state.sessions = session_factory(get_engine(settings.effective_database_url))
        app.state.gateway = StripeGateway.from_settings(settings)
        app.state.key_cache = KeyCache.from_settings(settings)
        app.state.auth_throttle = AuthThrottle.from_settings(settings)
        app.state.temporal = temporal
        if temporal is None:
            from worker import connect_temporal

            app.state.temporal = await connect_temporal(settings)
        sweeper = StartSweeper(
            app.state.sessions,
            app.state.temporal,
            settings,
            interval=settings.start_sweep_seconds,
            grace=timedelta(seconds=settings.start_sweep_seconds),
        )
        app.state.start_sweeper = sweeper
        sweeper.start()
        orphans = OrphanCheck(
            app.state.sessions,
            app.state.temporal,
            app.state.metrics.orphaned_subscriptions,
            settings.orphan_check_seconds,
        )
        app.state.orphan_check = orphans
        orphans.start()
        # Reservations older than any request can run are settled (api/redemption_sweeper.py).
        redemptions = RedemptionSweeper(
            app.state.sessions,
            interval=settings.orphan_check_seconds,
            grace=timedelta(seconds=settings.update_deadline_seconds + 300),
        )
        redemptions.start()
        clocks = ClockSweeper(app.state.sessions, app.state.temporal, settings)
        app.state.clock_sweeper = clocks
        if settings.sandbox:
            clocks.start()
        log.info("api.started", temporal=settings.temporal_address, sandbox=settings.sandbox)
        # What startup built (modules, the app, clients) lives as long as the process: keep it
        # out of the collector's scans, or each full collection pauses requests for ~100 ms.
        gc.collect()
        gc.freeze()
        yield
        await clocks.stop()
        await redemptions.stop()
        await orphans.stop()
        await sweeper.stop()
        await app.state.gateway.aclose()

    app = FastAPI(
        title="Recur",
        version="1.0",
        summary="Subscription lifecycle engine: trials, renewals, proration, dunning.",
        lifespan=lifespan,
        # Served by api.docs_ui from installed files instead (FastAPI's load from a CDN).
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(InputGuardMiddleware)  # inside observability: its 422s are counted
    install_observability(app)
    for module in (
        entitlements,  # first: the hot path is matched before every other router
        usage_events,  # then ingestion: matching a path costs a check per route before it
        health,
        plans,
        api_keys,
        customers,
        balance,
        subscriptions,
        items,
        invoices,
        events,
        test_clocks,
        stripe_webhooks,
        webhook_endpoints,
        coupons,
        promotion_codes,
        subscription_discounts,
        meters,
        subscription_usage,
    ):
        app.include_router(module.router)
    install_docs(app)
    install_openapi(app)
    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory api.app:app_factory`."""
    return create_app()
