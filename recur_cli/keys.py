"""`recur keys …`: API keys, straight in PostgreSQL (works without the API)."""

from __future__ import annotations

from typing import Annotated

import typer

from recur_cli.database import run_db
from recur_cli.exits import CliError, Exit
from recur_cli.output import JsonOpt, emit, reported, table

keys_app = typer.Typer(
    rich_markup_mode=None,  # plain help: a flag shows no value placeholder
    help="API keys: create (shown once), list, revoke.",
    no_args_is_help=True,
)


@keys_app.command("create")
@reported
def keys_create(
    role: Annotated[str, typer.Option(help="admin, product or support", show_default=False)],
    name: Annotated[str | None, typer.Option(help="A label")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a key; the key itself is printed once and never stored."""
    from api.auth import Role
    from cli_ops import create_key

    if role not in {r.value for r in Role}:
        raise CliError(f"role must be one of {[r.value for r in Role]}", Exit.USAGE, "invalid_role")
    key_id, raw = run_db(lambda: create_key(role, name))
    emit(
        {"id": key_id, "role": role, "name": name, "key": raw},
        json_out,
        lambda: typer.echo(
            f"id:   {key_id}\nrole: {role}\nkey:  {raw}\n(store it now: it is not shown again)"
        ),
    )


@keys_app.command("list")
@reported
def keys_list(json_out: JsonOpt = False) -> None:
    """List keys (never the keys themselves)."""
    from cli_ops import list_keys

    rows = run_db(list_keys)
    headers = ["id", "role", "name", "prefix", "created", "revoked"]
    emit(
        [dict(zip(headers, row, strict=True)) for row in rows],
        json_out,
        lambda: table(headers, rows),
    )


@keys_app.command("revoke")
@reported
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…)", show_default=False)],
    json_out: JsonOpt = False,
) -> None:
    """Revoke a key."""
    from cli_ops import revoke_key

    if not run_db(lambda: revoke_key(key_id)):
        raise CliError(f"no API key {key_id}", Exit.NOT_FOUND, "resource_missing")
    emit({"id": key_id, "revoked": True}, json_out, lambda: typer.echo(f"revoked {key_id}"))
