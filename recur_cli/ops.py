"""`recur ops …`: checks operators run against Temporal before a deploy that drops code
old runs need (README, "Retiring a patch")."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ParamSpec

import click
import typer

from config import get_settings
from recur_cli.exits import CliError, Exit
from recur_cli.output import JsonOpt, emit, note, reported, table

ops_app = typer.Typer(
    rich_markup_mode=None,  # plain help: a flag shows no value placeholder
    help="Operator checks against Temporal.",
    no_args_is_help=True,
)

P = ParamSpec("P")


def _exits_at_once(command: Callable[P, None]) -> Callable[P, None]:
    """End the process without interpreter finalization once the command is done: the
    Temporal SDK's native threads can abort it while they wind down (as in `worker.py`)."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        code = 0
        try:
            command(*args, **kwargs)
        except (typer.Exit, click.exceptions.Exit) as done:
            code = done.exit_code
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    return run


@ops_app.command("open-runs")
@_exits_at_once
@reported
def ops_open_runs(
    workflow_type: Annotated[
        str,
        typer.Option(help="The workflow type, e.g. SubscriptionWorkflow", show_default=False),
    ],
    started_before: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
            help="Only runs started before this time (UTC unless an offset is given)",
            show_default=False,
        ),
    ] = None,
    without_patch: Annotated[
        str | None,
        typer.Option(
            help="Only runs whose history has not taken this patch (reads each run's history)",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the open runs of a workflow type; exit 7 when there is any (0: none open)."""
    from cli_ops import open_runs, valid_workflow_type

    if not valid_workflow_type(workflow_type):
        raise CliError(f"not a workflow type: {workflow_type!r}", Exit.USAGE, "usage")
    if started_before is not None and started_before.tzinfo is None:
        started_before = started_before.replace(tzinfo=UTC)
    address = get_settings().temporal_address
    note(f"temporal {address}")
    try:
        runs = asyncio.run(open_runs(workflow_type, started_before, without_patch))
    except RuntimeError as err:  # the SDK's "Failed client connect: …"
        raise CliError(
            f"cannot reach Temporal at {address} ({str(err).splitlines()[0]}); the address "
            "comes from RECUR_TEMPORAL_ADDRESS.",
            Exit.UNREACHABLE,
            "temporal_unreachable",
        ) from None
    rows: list[dict[str, Any]] = [
        {
            "workflow_id": run.workflow_id,
            "run_id": run.run_id,
            "started_at": run.started_at.isoformat(),
            **({"patches": list(run.patches)} if without_patch is not None else {}),
        }
        for run in runs
    ]

    def human() -> None:
        table(
            ["workflow id", "run id", "started"],
            [[r["workflow_id"], r["run_id"], r["started_at"]] for r in rows],
        )

    emit(rows, json_out, human)
    if rows:
        raise typer.Exit(int(Exit.OPEN_RUNS))
