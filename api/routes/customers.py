"""Customers, their payment method, and their entitlements."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import (
    CurrentKey,
    GatewayDep,
    ProductKey,
    ProductOrSupportKey,
    SessionDep,
    TemporalDep,
)
from api.errors import not_found
from api.idempotency import IdempotencyDep
from api.ids import new_id
from api.schemas import CustomerCreate, CustomerOut, EntitlementOut, PaymentMethodUpdate
from api.services import customers as service
from db.models import Customer
from db.repositories import balance, customers, entitlements

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
    customer = await service.create(
        session,
        gateway,
        customer_id=new_id("cus"),
        email=body.email,
        name=body.name,
        payment_method=body.payment_method,
    )
    return await idem.respond(201, CustomerOut.model_validate(customer, from_attributes=True))


@router.get("/{customer_id}", response_model=CustomerOut)
async def get_customer(customer_id: str, session: SessionDep, _: CurrentKey) -> object:
    customer = await customers.get(session, customer_id)
    if customer is None:
        raise not_found("customer", customer_id)
    return await _with_balances(session, customer)


async def _with_balances(session: SessionDep, customer: Customer) -> CustomerOut:
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
    customer = await customers.get(session, customer_id)
    if customer is None:
        raise not_found("customer", customer_id)
    customer = await service.replace_payment_method(
        session, gateway, temporal, customer, body.payment_method, key.actor
    )
    return await _with_balances(session, customer)


@router.get("/{customer_id}/entitlements", response_model=list[EntitlementOut])
async def list_entitlements(customer_id: str, session: SessionDep, _: CurrentKey) -> object:
    if await customers.get(session, customer_id) is None:
        raise not_found("customer", customer_id)
    return await entitlements.for_customer(session, customer_id)
