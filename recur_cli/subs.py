"""`recur subs …`: every lifecycle operation of a subscription, through the API with the
admin key (so each is audited on the timeline like any other call)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer

from recur_cli.api_client import call
from recur_cli.database import run_db
from recur_cli.exits import CliError, Exit
from recur_cli.output import JsonOpt, amount, emit, reported, table
from recur_cli.views import print_invoice_lines, print_invoices, print_subscription

subs_app = typer.Typer(
    rich_markup_mode=None,  # plain help: a flag shows no value placeholder
    help="Inspect and operate subscriptions.",
    no_args_is_help=True,
)

SubId = Annotated[str, typer.Argument(help="The subscription id (sub_…)", show_default=False)]


def _time_option() -> Any:
    return typer.Option(
        formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
        help="UTC unless an offset is given, e.g. 2027-07-01 or 2027-07-01T12:00:00+00:00",
        show_default=False,
    )


class ChangeWhen(StrEnum):
    now = "now"
    period_end = "period_end"


class Proration(StrEnum):
    always_invoice = "always_invoice"
    create_prorations = "create_prorations"
    none = "none"


def _iso(value: datetime) -> str:
    """A time for the API: naive means UTC (the README's rule for every time)."""
    if value.tzinfo is None:
        return value.isoformat() + "Z"
    return value.isoformat()


def _sub_result(sub: dict[str, Any], json_out: bool) -> None:
    emit(sub, json_out, lambda: print_subscription(sub))


@subs_app.command("list")
@reported
def subs_list(
    status: Annotated[str | None, typer.Option(help="Filter by status")] = None,
    customer: Annotated[str | None, typer.Option(help="Filter by customer id")] = None,
    plan: Annotated[str | None, typer.Option(help="Filter by plan id")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List subscriptions."""
    params = {
        k: v for k, v in {"status": status, "customer_id": customer, "plan_id": plan}.items() if v
    }
    rows = call("GET", "/v1/subscriptions", params=params)
    emit(
        rows,
        json_out,
        lambda: table(
            ["id", "customer", "plan", "status", "period end"],
            [
                [r["id"], r["customer_id"], r["plan_id"], r["status"], r["current_period_end"]]
                for r in rows
            ],
        ),
    )


@subs_app.command("show")
@reported
def subs_show(subscription_id: SubId, json_out: JsonOpt = False) -> None:
    """State, invoices (with attempts) and timeline of one subscription."""
    sub = call("GET", f"/v1/subscriptions/{subscription_id}")
    invoices = call("GET", "/v1/invoices", params={"subscription_id": subscription_id})
    events = call("GET", "/v1/events", params={"subscription_id": subscription_id})

    def human() -> None:
        print_subscription(sub)
        typer.echo("\nInvoices")
        print_invoices(invoices)
        typer.echo("\nTimeline")
        table(
            ["when", "event", "actor"],
            [[e["occurred_at"], e["type"], e["actor"]] for e in events],
        )

    emit({"subscription": sub, "invoices": invoices, "events": events}, json_out, human)


@subs_app.command("usage")
@reported
def subs_usage(subscription_id: SubId, json_out: JsonOpt = False) -> None:
    """The current period's usage of each metered item, priced as its invoice will be."""
    lines = call("GET", f"/v1/subscriptions/{subscription_id}/usage")
    currencies = {
        plan_id: call("GET", f"/v1/plans/{plan_id}")["currency"]
        for plan_id in {line["plan_id"] for line in lines}
    }
    emit(
        lines,
        json_out,
        lambda: table(
            ["meter", "plan", "from", "to", "quantity", "amount"],
            [
                [
                    u["meter_id"],
                    u["plan_id"],
                    u["period_start"],
                    u["period_end"],
                    u["quantity"],
                    amount(u["amount"], currencies[u["plan_id"]]),
                ]
                for u in lines
            ],
        ),
    )


@subs_app.command("create")
@reported
def subs_create(
    customer: Annotated[str, typer.Option(help="Customer id (cus_…)", show_default=False)],
    plan: Annotated[str, typer.Option(help="Plan id (plan_…)", show_default=False)],
    trial_days: Annotated[int | None, typer.Option(help="Override the plan's trial")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Subscribe a customer to a plan."""
    body: dict[str, Any] = {"customer_id": customer, "plan_id": plan}
    if trial_days is not None:
        body["trial_days"] = trial_days
    _sub_result(call("POST", "/v1/subscriptions", json=body), json_out)


@subs_app.command("cancel")
@reported
def subs_cancel(
    subscription_id: SubId,
    now: Annotated[
        bool,
        typer.Option(
            "--now/--at-period-end",
            help="End access now, or at the end of the paid period (the default)",
        ),
    ] = False,
    refund: Annotated[
        bool,
        typer.Option("--refund/--no-refund", help="With --now: refund the unused time"),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Cancel a subscription (at period end unless --now)."""
    if refund and not now:
        raise CliError("--refund needs --now", Exit.USAGE, "usage")
    body = {"at_period_end": not now, "refund": "prorated" if refund else "none"}
    _sub_result(call("POST", f"/v1/subscriptions/{subscription_id}/cancel", json=body), json_out)


@subs_app.command("reactivate")
@reported
def subs_reactivate(subscription_id: SubId, json_out: JsonOpt = False) -> None:
    """Undo a cancellation at period end (before the period ends)."""
    _sub_result(call("POST", f"/v1/subscriptions/{subscription_id}/reactivate"), json_out)


@subs_app.command("pause")
@reported
def subs_pause(
    subscription_id: SubId,
    resumes_at: Annotated[datetime | None, _time_option()] = None,
    json_out: JsonOpt = False,
) -> None:
    """Pause billing and access (until --resumes-at, or until `resume`)."""
    body = {"resumes_at": _iso(resumes_at)} if resumes_at else {}
    _sub_result(call("POST", f"/v1/subscriptions/{subscription_id}/pause", json=body), json_out)


@subs_app.command("resume")
@reported
def subs_resume(subscription_id: SubId, json_out: JsonOpt = False) -> None:
    """Resume a paused subscription now."""
    _sub_result(call("POST", f"/v1/subscriptions/{subscription_id}/resume"), json_out)


@subs_app.command("change-plan")
@reported
def subs_change_plan(
    subscription_id: SubId,
    plan: Annotated[str, typer.Argument(help="The new plan id (plan_…)", show_default=False)],
    when: Annotated[
        ChangeWhen | None, typer.Option(help="Default: upgrades now, downgrades at period end")
    ] = None,
    proration: Annotated[Proration | None, typer.Option(help="How a change now is charged")] = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Show the decision and invoice; change nothing")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Upgrade, downgrade or switch interval (--preview: what it would do and cost)."""
    body: dict[str, Any] = {"plan_id": plan, "preview": preview}
    if when is not None:
        body["when"] = when.value
    if proration is not None:
        body["proration"] = proration.value
    result = call("POST", f"/v1/subscriptions/{subscription_id}/change_plan", json=body)

    def human() -> None:
        typer.echo(f"{'preview: ' if preview else ''}{_decision(result.get('decision'))}")
        print_subscription(result["subscription"])
        invoice = result.get("invoice_preview") if preview else result.get("invoice")
        if invoice:
            print_invoice_lines(invoice)
        else:
            typer.echo("no invoice now")

    emit(result, json_out, human)


def _decision(decision: Any) -> str:
    if isinstance(decision, dict):
        return ", ".join(f"{k} {v}" for k, v in decision.items() if v is not None)
    return str(decision)


@subs_app.command("extend-trial")
@reported
def subs_extend_trial(
    subscription_id: SubId,
    until: Annotated[datetime, _time_option()],
    json_out: JsonOpt = False,
) -> None:
    """Move the end of a trial to --until."""
    body = {"trial_end": _iso(until)}
    _sub_result(
        call("POST", f"/v1/subscriptions/{subscription_id}/extend_trial", json=body), json_out
    )


@subs_app.command("retry-payment")
@reported
def subs_retry(subscription_id: SubId, json_out: JsonOpt = False) -> None:
    """Try the open invoice again now; exit 5 when the card is declined again."""
    outcome = call("POST", f"/v1/subscriptions/{subscription_id}/retry_payment")
    invoice = call("GET", f"/v1/invoices/{outcome['invoice_id']}")
    outcome["currency"] = invoice["currency"]

    def human() -> None:
        reason = outcome.get("decline_code") or outcome.get("failure_code")
        typer.echo(
            f"{outcome['status']}: invoice {outcome['invoice_id']} attempt "
            f"{outcome['attempt_number']}, {amount(outcome['amount'], invoice['currency'])}"
            + (f" ({reason})" if outcome["status"] != "paid" and reason else "")
        )

    emit(outcome, json_out, human)
    if outcome["status"] != "paid":
        raise typer.Exit(int(Exit.DECLINED))


@subs_app.command("payment-method")
@reported
def subs_payment_method(
    subscription_id: SubId,
    payment_method: Annotated[
        str, typer.Argument(help="A payment method id (pm_…)", show_default=False)
    ],
    json_out: JsonOpt = False,
) -> None:
    """Replace the default payment method of the subscription's customer (a subscription
    waiting on payment retries at once)."""
    sub = call("GET", f"/v1/subscriptions/{subscription_id}")
    from recur_cli.customers import set_payment_method

    set_payment_method(sub["customer_id"], payment_method, json_out)


@subs_app.command("reconcile")
@reported
def subs_reconcile(
    repair: Annotated[
        bool, typer.Option("--repair", help="Record each one found as canceled.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Live subscriptions whose workflow has closed (terminated, failed, timed out); with
    --repair, record them as canceled. Reads PostgreSQL and Temporal directly."""
    from cli_ops import reconcile_subscriptions

    orphans = run_db(lambda: reconcile_subscriptions(repair))
    rows = [
        {
            "subscription_id": o.subscription_id,
            "read_model_status": o.read_model_status,
            "workflow_status": o.workflow_status.lower(),
            "repaired": repair,
        }
        for o in orphans
    ]

    def human() -> None:
        table(
            ["subscription", "read model", "workflow", "now"],
            [
                [
                    r["subscription_id"],
                    r["read_model_status"],
                    r["workflow_status"],
                    "canceled" if repair else "",
                ]
                for r in rows
            ],
        )

    emit(rows, json_out, human)
