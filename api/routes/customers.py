"""Customers, their payment method, and their entitlements."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from sqlmodel import col, select

from activities.stripe_gateway import InvalidPaymentRequest
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
from db.repositories import entitlements

router = APIRouter(prefix="/v1/customers", tags=["customers"])


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
    stripe_id = await gateway.create_customer(
        email=body.email, name=body.name, recur_id=customer_id
    )
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
    return await idem.respond(201, CustomerOut.model_validate(customer, from_attributes=True))


@router.get("/{customer_id}", response_model=CustomerOut)
async def get_customer(customer_id: str, session: SessionDep, _: CurrentKey) -> object:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise not_found("customer", customer_id)
    return customer


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
    return customer


@router.get("/{customer_id}/entitlements", response_model=list[EntitlementOut])
async def list_entitlements(customer_id: str, session: SessionDep, _: CurrentKey) -> object:
    if await session.get(Customer, customer_id) is None:
        raise not_found("customer", customer_id)
    return await entitlements.for_customer(session, customer_id)


async def _attach(gateway: GatewayDep, stripe_id: str, payment_method: str) -> str:
    try:
        return await gateway.attach_payment_method(
            stripe_customer_id=stripe_id, payment_method=payment_method
        )
    except InvalidPaymentRequest as err:
        raise ApiError(
            422, "invalid_payment_method", f"Stripe refused the payment method: {err.message}"
        ) from err
