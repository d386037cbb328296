"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from db.repositories import health

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """PostgreSQL and Temporal both answer; how many live subscriptions have a closed
    workflow, as last counted (null before the first count)."""
    checks: dict[str, str] = {}
    try:
        async with request.app.state.sessions() as session:
            await health.ping(session)
        checks["postgres"] = "ok"
    except Exception as err:
        checks["postgres"] = f"error: {type(err).__name__}"
    client = request.app.state.temporal
    try:
        if client is None:
            raise RuntimeError("not connected")
        await client.service_client.check_health()
        checks["temporal"] = "ok"
    except Exception as err:
        checks["temporal"] = f"error: {type(err).__name__}"
    ready = all(v == "ok" for v in checks.values())
    # Reported, not a reason to take the API out of rotation: the API serves them fine.
    orphans = request.app.state.orphan_check.found
    return JSONResponse(
        status_code=200 if ready else 503,
        content={"ready": ready, "checks": checks, "orphaned_subscriptions": orphans},
    )
