"""Customers and their default payment method."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import Customer, Subscription

# Statuses in which a subscription waits for a working payment method.
AWAITING_PAYMENT = ("past_due", "incomplete", "unpaid")


def add(session: AsyncSession, customer: Customer) -> None:
    session.add(customer)


async def get(session: AsyncSession, customer_id: str) -> Customer | None:
    return await session.get(Customer, customer_id)


def set_payment_method(session: AsyncSession, customer: Customer, payment_method: str) -> None:
    customer.default_payment_method = payment_method
    session.add(customer)


async def subscriptions_awaiting_payment(session: AsyncSession, customer_id: str) -> Sequence[str]:
    """The customer's subscriptions that wait for a payment method (to retry at once)."""
    query = select(Subscription.id).where(
        Subscription.customer_id == customer_id,
        col(Subscription.status).in_(AWAITING_PAYMENT),
    )
    return (await session.exec(query)).all()
