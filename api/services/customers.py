"""Customers: created here and in Stripe together; a new payment method wakes the
subscriptions waiting for one."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TypeVar

import stripe
import structlog
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from activities.stripe_gateway import CardDeclined, InvalidPaymentRequest, StripeGateway
from api import lifecycle
from db.models import Customer
from db.repositories import customers
from domain import errors
from domain.errors import ErrorCode

log = structlog.get_logger()
T = TypeVar("T")


async def create(
    session: AsyncSession,
    gateway: StripeGateway,
    *,
    customer_id: str,
    email: str,
    name: str | None,
    payment_method: str | None,
) -> Customer:
    """Create the customer in Stripe (attaching the payment method, if any) and here.
    Commits the caller's unit of work: a customer that is not stored is deleted from
    Stripe again, so no request that failed leaves a Stripe customer behind (a retry mints a
    new id, hence a new Stripe customer; this one would be orphaned)."""
    stripe_id = await call_stripe(
        gateway.create_customer(email=email, name=name, recur_id=customer_id)
    )
    try:
        attached = None
        if payment_method:
            attached = await attach(gateway, stripe_id, payment_method)
        customer = Customer(
            id=customer_id,
            email=email,
            name=name,
            stripe_customer_id=stripe_id,
            default_payment_method=attached,
            created_at=datetime.now(UTC),
        )
        customers.add(session, customer)
        await session.commit()
    except BaseException:
        await _discard(gateway, stripe_id, customer_id)
        raise
    return customer


async def replace_payment_method(
    session: AsyncSession,
    gateway: StripeGateway,
    temporal: Client,
    customer: Customer,
    payment_method: str,
    actor: str,
) -> Customer:
    """Attach the payment method in Stripe and make it the default; the subscriptions
    waiting on payment are told at once. Commits the caller's unit of work before telling
    them: their retry charges the payment method on record."""
    if customer.stripe_customer_id is None:
        raise errors.NO_STRIPE_CUSTOMER("Customer has no Stripe customer")
    attached = await attach(gateway, customer.stripe_customer_id, payment_method)
    customers.set_payment_method(session, customer, attached)
    await session.commit()
    for subscription_id in await customers.subscriptions_awaiting_payment(session, customer.id):
        await lifecycle.signal_payment_method(temporal, subscription_id, attached, actor)
    return customer


async def attach(gateway: StripeGateway, stripe_id: str, payment_method: str) -> str:
    return await call_stripe(
        gateway.attach_payment_method(stripe_customer_id=stripe_id, payment_method=payment_method),
        refused=errors.PAYMENT_METHOD_INVALID,
    )


async def call_stripe(
    call: Awaitable[T], *, refused: ErrorCode = errors.STRIPE_REQUEST_INVALID
) -> T:
    """A synchronous Stripe call as the API answers it: a refused card is a 402
    `card_declined`, a refused request a 422 with the code `refused`, Stripe unreachable or
    failing a 503."""
    try:
        return await call
    except InvalidPaymentRequest as err:
        raise refused(f"Stripe refused the request ({err.code}): {err.message}") from err
    except CardDeclined as err:
        raise errors.CARD_DECLINED(f"The card was declined: {err.message}") from err
    except stripe.StripeError as err:
        log.warning("stripe.call_failed", error=type(err).__name__, http_status=err.http_status)
        raise errors.STRIPE_UNAVAILABLE("Stripe could not be reached; try again later") from err


async def _discard(gateway: StripeGateway, stripe_id: str, customer_id: str) -> None:
    try:
        await gateway.delete_customer(stripe_id)
    except Exception:
        # Best effort: the answer the caller gets is the original failure.
        log.warning(
            "stripe.customer_orphaned", stripe_customer_id=stripe_id, customer_id=customer_id
        )
