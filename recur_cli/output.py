"""How commands print: a table or lines for people, JSON with `--json`; errors on stderr
(as `{"error": …}` with `--json`) and the exit code of their kind."""

from __future__ import annotations

import functools
import json
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

import click
import typer

from domain.money import format_amount
from recur_cli.exits import CliError, Exit
from recur_cli.state import OPTIONS

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON (errors too, on stderr).")
]

P = ParamSpec("P")
R = TypeVar("R")


def reported(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a CliError (or any unexpected exception) into a message and its exit code."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        as_json = bool(kwargs.get("json_out", False))
        try:
            return command(*args, **kwargs)
        except (
            typer.Exit,
            click.exceptions.ClickException,
            click.exceptions.Exit,
            click.exceptions.Abort,
        ):
            raise  # usage errors (exit 2) and deliberate exits keep click's handling
        except CliError as err:
            _error(err.message, err.error_code, err.exit_code, as_json)
        except Exception as err:
            if OPTIONS.verbose:
                traceback.print_exc()
            message = f"unexpected {type(err).__name__}: {err}"
            _error(message, "unexpected", Exit.UNEXPECTED, as_json)
        raise AssertionError("unreachable")

    return run


def _error(message: str, code: str | None, exit_code: Exit, as_json: bool) -> None:
    if as_json:
        error: dict[str, object] = {"code": code or exit_code.name.lower(), "message": message}
        error["exit_code"] = int(exit_code)
        body = {"error": error}
        print(json.dumps(body), file=sys.stderr)
    else:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(int(exit_code))


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    """JSON of `data` with --json, else what `human` prints."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        human()


def amount(value: int | None, currency: str | None) -> str:
    """Minor units for people: (1100, "usd") -> "11.00 USD"."""
    if value is None:
        return ""
    if not currency:
        return str(value)
    return format_amount(value, currency)


def table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    typer.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if not rows:
        typer.echo("(none)")


def note(line: str) -> None:
    """A line for --verbose (stderr, so --json output stays parseable)."""
    if OPTIONS.verbose:
        typer.echo(line, err=True)
