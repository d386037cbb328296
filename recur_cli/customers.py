"""`recur customers …`: a customer and its payment method, through the API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from recur_cli.api_client import call
from recur_cli.output import JsonOpt, emit, reported

customers_app = typer.Typer(
    rich_markup_mode=None,  # plain help: a flag shows no value placeholder
    help="Inspect customers, replace a payment method.",
    no_args_is_help=True,
)

CusId = Annotated[str, typer.Argument(help="The customer id (cus_…)", show_default=False)]


def _print_customer(customer: dict[str, Any]) -> None:
    typer.echo(f"{customer['id']}: {customer['email']}  {customer.get('name') or ''}".rstrip())
    typer.echo(f"  payment method  {customer.get('default_payment_method') or 'none'}")


@customers_app.command("show")
@reported
def customers_show(customer_id: CusId, json_out: JsonOpt = False) -> None:
    """A customer and its default payment method."""
    customer = call("GET", f"/v1/customers/{customer_id}")
    emit(customer, json_out, lambda: _print_customer(customer))


def set_payment_method(customer_id: str, payment_method: str, json_out: bool) -> None:
    body = {"payment_method": payment_method}
    customer = call("POST", f"/v1/customers/{customer_id}/payment_method", json=body)
    emit(customer, json_out, lambda: _print_customer(customer))


@customers_app.command("payment-method")
@reported
def customers_payment_method(
    customer_id: CusId,
    payment_method: Annotated[
        str, typer.Argument(help="A payment method id (pm_…)", show_default=False)
    ],
    json_out: JsonOpt = False,
) -> None:
    """Replace the default payment method; the customer's subscriptions waiting on payment
    retry at once. Exit 5 when the card is declined."""
    set_payment_method(customer_id, payment_method, json_out)
