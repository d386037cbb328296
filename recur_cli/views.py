"""Human renderings of the API's subscription, invoice and charge shapes."""

from __future__ import annotations

from typing import Any

import typer

from recur_cli.output import amount, table


def subscription_lines(sub: dict[str, Any]) -> list[str]:
    lines = [f"{sub['id']}: {sub['status']}  plan {sub['plan_id']}  customer {sub['customer_id']}"]
    if sub.get("current_period_end"):
        lines.append(f"  period       {sub['current_period_start']} → {sub['current_period_end']}")
    if sub.get("trial_end") and sub["status"] == "trialing":
        lines.append(f"  trial ends   {sub['trial_end']}")
    if sub.get("cancel_at_period_end"):
        lines.append(f"  cancels at period end ({sub['current_period_end']})")
    if sub.get("canceled_at"):
        lines.append(f"  canceled at  {sub['canceled_at']}")
    pause = sub.get("pause")
    if pause:
        lines.append(
            f"  paused at    {pause['paused_at']}, resumes {pause['resumes_at'] or 'when resumed'}"
        )
    change = sub.get("pending_change")
    if change:
        lines.append(f"  changes to   {change['plan_id']} at {change['effective_at']}")
    dunning = sub.get("dunning") or {}
    if dunning.get("attempts"):
        lines.append(
            f"  dunning      {dunning['attempts']} failed attempt(s), next retry "
            f"{dunning.get('next_retry_at') or 'none'}"
        )
    return lines


def print_subscription(sub: dict[str, Any]) -> None:
    for line in subscription_lines(sub):
        typer.echo(line)


def invoice_line(invoice: dict[str, Any], label: str = "invoice") -> str:
    ident = invoice.get("id") or "(preview)"
    return (
        f"{label} {ident}: {invoice['status']}, total "
        f"{amount(invoice['total'], invoice['currency'])}"
    )


def print_invoice_lines(invoice: dict[str, Any]) -> None:
    typer.echo(invoice_line(invoice))
    for line in invoice.get("lines", []):
        typer.echo(f"  {amount(line['amount'], invoice['currency']):>14}  {line['description']}")


def print_invoices(invoices: list[dict[str, Any]]) -> None:
    table(
        ["id", "status", "total", "period start", "attempts"],
        [
            [
                i["id"],
                i["status"],
                amount(i["total"], i["currency"]),
                i["period_start"],
                len(i["attempts"]),
            ]
            for i in invoices
        ],
    )
