"""Customers, their payment method, and their entitlements."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import TypeVar

import stripe
import structlog
from fastapi import APIRouter
from sqlmodel import col, select

from activities.stripe_gateway import CardDeclined, InvalidPaymentRequest
from api import lifecycle
from api.deps import (
    CurrentKey,
    GatewayDep,
    ProductKey,
    ProductOrSupportKey,
    SessionDep,
    TemporalDep,
)
from api.errors import ApiError, not_found
from api.idempotency import IdempotencyDep
from api.ids import new_id
from api.schemas import CustomerCreate, CustomerOut, EntitlementOut, PaymentMethodUpdate
from db.models import Customer, Subscription
from db.repositories import balance, entitlements

router = APIRouter(prefix="/v1/customers", tags=["customers"])
log = structlog.get_logger()
T = TypeVar("T")


@router.post("", status_code=201, response_model=CustomerOut)
async def create_customer(
    body: CustomerCreate,
    idem: IdempotencyDep,
    session: SessionDep,
    gateway: GatewayDep,
    key: ProductKey,
) -> object:
    """Create the customer here and in Stripe, attaching the payment method if given."""
    if (replay := await idem.replay()) is not None:
        return replay
    customer_id = new_id("cus")
    stripe_id = await _stripe(
        gateway.create_customer(email=body.email, name=body.name, recur_id=customer_id)
    )
    try:
        payment_method = None
        if body.payment_method:
            payment_method = await _attach(gateway, stripe_id, body.payment_method)
        customer = Customer(
            id=customer_id,
            email=body.email,
            name=body.name,
            stripe_customer_id=stripe_id,
            default_payment_method=payment_method,
            created_at=datetime.now(UTC),
        )
        session.add(customer)
        await session.commit()
    except BaseException:
        # No half-created customer: the request failed, so its Stripe customer goes too
        # (a retry mints a new id, hence a new Stripe customer; this one would be orphaned).
        await _discard(gateway, stripe_id, customer_id)
        raise
    return await idem.respond(201, CustomerOut.model_validate(customer, from_attributes=True))


@router.get("/{customer_id}", response_model=CustomerOut)
async def get_customer(customer_id: str, session: SessionDep, _: CurrentKey) -> object:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise not_found("customer", customer_id)
    return await _out(session, customer)


async def _out(session: SessionDep, customer: Customer) -> CustomerOut:
    """The customer with its balances."""
    out = CustomerOut.model_validate(customer, from_attributes=True)
    out.balances = await balance.balances(session, customer.id)
    return out


@router.post("/{customer_id}/payment_method", response_model=CustomerOut)
async def update_payment_method(
    customer_id: str,
    body: PaymentMethodUpdate,
    session: SessionDep,
    gateway: GatewayDep,
    temporal: TemporalDep,
    key: ProductOrSupportKey,
) -> object:
    """Replace the default payment method; subscriptions waiting on payment retry at once."""
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise not_found("customer", customer_id)
    if customer.stripe_customer_id is None:
        raise ApiError(409, "no_stripe_customer", "Customer has no Stripe customer")
    customer.default_payment_method = await _attach(
        gateway, customer.stripe_customer_id, body.payment_method
    )
    session.add(customer)
    await session.commit()
    waiting = await session.exec(
        select(Subscription.id).where(
            Subscription.customer_id == customer_id,
            col(Subscription.status).in_(["past_due", "incomplete", "unpaid"]),
        )
    )
    for subscription_id in waiting.all():
        await lifecycle.signal_payment_method(
            temporal, subscription_id, customer.default_payment_method, key.actor
        )
    return await _out(session, customer)


@router.get("/{customer_id}/entitlements", response_model=list[EntitlementOut])
async def list_entitlements(customer_id: str, session: SessionDep, _: CurrentKey) -> object:
    if await session.get(Customer, customer_id) is None:
        raise not_found("customer", customer_id)
    return await entitlements.for_customer(session, customer_id)


async def _attach(gateway: GatewayDep, stripe_id: str, payment_method: str) -> str:
    return await _stripe(
        gateway.attach_payment_method(stripe_customer_id=stripe_id, payment_method=payment_method),
        refused="payment_method_invalid",
    )


async def _stripe(call: Awaitable[T], *, refused: str = "stripe_request_invalid") -> T:
    """A synchronous Stripe call as the API answers it: a refused card is a 402
    `card_declined`, a refused request a 422 `refused`, Stripe unreachable or failing a 503."""
    try:
        return await call
    except InvalidPaymentRequest as err:
        raise ApiError(
            422, refused, f"Stripe refused the request ({err.code}): {err.message}"
        ) from err
    except CardDeclined as err:
        raise ApiError(402, "card_declined", f"The card was declined: {err.message}") from err
    except stripe.StripeError as err:
        log.warning("stripe.call_failed", error=type(err).__name__, http_status=err.http_status)
        raise ApiError(
            503, "stripe_unavailable", "Stripe could not be reached; try again later"
        ) from err


async def _discard(gateway: GatewayDep, stripe_id: str, customer_id: str) -> None:
    try:
        await gateway.delete_customer(stripe_id)
    except Exception:
        # Best effort: the answer the caller gets is the original failure.
        log.warning(
            "stripe.customer_orphaned", stripe_customer_id=stripe_id, customer_id=customer_id
        )
