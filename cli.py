"""`recur`: run the stack and operate it.

`recur dev` starts everything on embedded defaults; `recur worker` / `recur api` run one
component; `recur keys ...` manages API keys in PostgreSQL; `recur subs ...` talks to
the running API with the admin key (so every action is audited like any other call).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import httpx
import typer

from config import get_settings

app = typer.Typer(help="Recur: subscription lifecycle engine.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
subs_app = typer.Typer(help="Inspect and operate subscriptions.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(subs_app, name="subs")


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
def migrate() -> None:
    """Apply database migrations."""
    from db.migrate import upgrade

    upgrade(get_settings().effective_database_url)
    typer.echo("migrations applied")


# ---------------------------------------------------------------------- keys


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, product or support")],
    name: Annotated[str | None, typer.Option(help="A label")] = None,
) -> None:
    """Create a key; the key itself is printed once and never stored."""
    from cli_ops import create_key

    try:
        key_id, raw = _run(create_key(role, name))
    except ValueError as err:
        _fail(str(err))
    typer.echo(f"id:   {key_id}\nrole: {role}\nkey:  {raw}\n(store it now: it is not shown again)")


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never the keys themselves)."""
    from cli_ops import list_keys

    rows = _run(list_keys())
    _table(["id", "role", "name", "prefix", "created", "revoked"], rows)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key."""
    from cli_ops import revoke_key

    if not _run(revoke_key(key_id)):
        _fail(f"no API key {key_id}")
    typer.echo(f"revoked {key_id}")


# ---------------------------------------------------------------------- subs


def _api() -> httpx.Client:
    settings = get_settings()
    base = f"http://{settings.api_host}:{settings.api_port}"
    return httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {settings.admin_key}"}, timeout=120
    )


def _call(method: str, path: str, **kwargs: Any) -> Any:
    try:
        with _api() as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as err:
        _fail(f"cannot reach the Recur API: {err}")
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            _fail(f"{response.status_code} {error['code']}: {error['message']}")
        except (ValueError, KeyError):
            _fail(f"{response.status_code}: {response.text}")
    return response.json()


@subs_app.command("list")
def subs_list(
    status: Annotated[str | None, typer.Option(help="Filter by status")] = None,
    customer: Annotated[str | None, typer.Option(help="Filter by customer id")] = None,
    plan: Annotated[str | None, typer.Option(help="Filter by plan id")] = None,
) -> None:
    """List subscriptions."""
    params = {
        k: v for k, v in {"status": status, "customer_id": customer, "plan_id": plan}.items() if v
    }
    rows = _call("GET", "/v1/subscriptions", params=params)
    _table(
        ["id", "customer", "plan", "status", "period end"],
        [
            [r["id"], r["customer_id"], r["plan_id"], r["status"], r["current_period_end"] or ""]
            for r in rows
        ],
    )


@subs_app.command("show")
def subs_show(subscription_id: str) -> None:
    """State, invoices and timeline of one subscription."""
    sub = _call("GET", f"/v1/subscriptions/{subscription_id}")
    invoices = _call("GET", "/v1/invoices", params={"subscription_id": subscription_id})
    events = _call("GET", "/v1/events", params={"subscription_id": subscription_id})
    typer.echo(json.dumps(sub, indent=2))
    typer.echo("\nInvoices")
    _table(
        ["id", "status", "total", "currency", "period start", "attempts"],
        [
            [i["id"], i["status"], i["total"], i["currency"], i["period_start"], len(i["attempts"])]
            for i in invoices
        ],
    )
    typer.echo("\nTimeline")
    _table(
        ["when", "event", "actor"],
        [[e["occurred_at"], e["type"], e["actor"] or ""] for e in events],
    )


@subs_app.command("retry-payment")
def subs_retry(subscription_id: str) -> None:
    """Try the open invoice again now."""
    outcome = _call("POST", f"/v1/subscriptions/{subscription_id}/retry_payment")
    typer.echo(
        f"{outcome['status']}: invoice {outcome['invoice_id']} attempt {outcome['attempt_number']}"
        + (
            f" ({outcome['decline_code'] or outcome['failure_code']})"
            if outcome["status"] != "paid"
            else ""
        )
    )
    if outcome["status"] != "paid":
        raise typer.Exit(2)


@subs_app.command("cancel")
def subs_cancel(
    subscription_id: str,
    now: Annotated[
        bool, typer.Option("--now", help="Cancel immediately instead of at period end")
    ] = False,
    refund: Annotated[
        bool, typer.Option("--refund", help="With --now: refund unused time")
    ] = False,
) -> None:
    """Cancel a subscription (at period end unless --now)."""
    body = {"at_period_end": not now, "refund": "prorated" if refund else "none"}
    sub = _call("POST", f"/v1/subscriptions/{subscription_id}/cancel", json=body)
    typer.echo(
        f"{sub['id']}: {sub['status']}"
        + (" (cancels at period end)" if sub["cancel_at_period_end"] else "")
    )


@subs_app.command("reconcile")
def subs_reconcile(
    repair: Annotated[
        bool, typer.Option("--repair", help="Record each one found as canceled")
    ] = False,
) -> None:
    """Find live subscriptions whose workflow has closed (terminated, failed, timed out);
    with --repair, record them as canceled. Reads PostgreSQL and Temporal directly."""
    from cli_ops import reconcile_subscriptions

    orphans = _run(reconcile_subscriptions(repair))
    _table(
        ["subscription", "read model", "workflow", "now"],
        [
            [
                o.subscription_id,
                o.read_model_status,
                o.workflow_status.lower(),
                "canceled" if repair else "",
            ]
            for o in orphans
        ],
    )
    if orphans and not repair:
        raise typer.Exit(3)


def _table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    typer.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if not rows:
        typer.echo("(none)")


def _fail(message: str) -> Any:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


if __name__ == "__main__":
    app()
