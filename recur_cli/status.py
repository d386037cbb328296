"""`recur status`: what this shell's `recur` talks to, and whether each answers."""

from __future__ import annotations

from typing import Any

import httpx
import typer

from config import get_settings
from recur_cli.api_client import api_base
from recur_cli.database import database_address, run_db
from recur_cli.exits import CliError, Exit
from recur_cli.output import JsonOpt, emit, reported


def _api_state(base: str) -> str:
    try:
        ready = httpx.get(f"{base}/readyz", timeout=5)
    except httpx.HTTPError as err:
        return f"unreachable ({type(err).__name__})"
    return "ready" if ready.status_code == 200 else f"not ready ({ready.status_code})"


def _database_state() -> str:
    from db.engine import get_engine
    from db.repositories import health

    async def ping() -> None:
        engine = get_engine(get_settings().effective_database_url)
        try:
            async with engine.connect() as conn:
                await health.ping(conn)
        finally:
            await engine.dispose()

    try:
        run_db(ping)
    except CliError as err:
        return "unreachable: " + err.message.partition("(")[2].partition(")")[0]
    return "reachable"


@reported
def status(json_out: JsonOpt = False) -> None:
    """Where `recur` sends requests (API, database, Temporal) and whether they answer;
    exit 6 when the API or the database does not."""
    settings = get_settings()
    base = api_base(settings)
    key = settings.admin_key
    info: dict[str, Any] = {
        "api": {"url": base, "state": _api_state(base)},
        "database": {"url": database_address(), "state": _database_state()},
        "temporal": {
            "address": settings.temporal_address,
            "namespace": settings.temporal_namespace,
        },
        "admin_key": key[:12] + "…" if len(key) > 12 else "(set)",
    }

    def human() -> None:
        typer.echo(f"API          {base}  {info['api']['state']}")
        typer.echo(f"database     {info['database']['url']}  {info['database']['state']}")
        typer.echo(
            f"Temporal     {settings.temporal_address} (namespace {settings.temporal_namespace})"
        )
        typer.echo(f"admin key    {info['admin_key']}  (RECUR_ADMIN_KEY)")

    emit(info, json_out, human)
    if info["api"]["state"] != "ready" or info["database"]["state"] != "reachable":
        raise typer.Exit(int(Exit.UNREACHABLE))
