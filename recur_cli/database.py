"""The database `recur keys` and `recur status` use, and its address for messages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from config import get_settings
from recur_cli.exits import CliError, Exit
from recur_cli.output import note

T = TypeVar("T")


def database_address() -> str:
    """The database URL without its password (safe to print)."""
    url = get_settings().effective_database_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unparsable RECUR_DATABASE_URL)"


def run_db(work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` (an async database job); a database out of reach is exit 6, naming it."""
    import asyncio

    return run_db_sync(lambda: asyncio.run(work()))  # type: ignore[arg-type]


def run_db_sync(work: Callable[[], T]) -> T:
    """Run `work` (a database job); a database out of reach is exit 6, naming it."""
    address = database_address()
    note(f"database {address}")
    try:
        return work()
    except (DBAPIError, OSError) as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        raise CliError(
            f"cannot reach PostgreSQL at {address} ({reason}); is `make dev` running? "
            "The address comes from RECUR_DATABASE_URL, else RECUR_PG_PORT.",
            Exit.UNREACHABLE,
            "database_unreachable",
        ) from None
