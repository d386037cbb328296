"""A customer's balance ledger: reading it, and manual credits and debits by staff."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Query

from api.deps import CurrentKey, SessionDep, SupportKey
from api.errors import not_found
from api.idempotency import IdempotencyDep
from api.schemas import BalanceTransactionIn, BalanceTransactionOut
from db import balance_ledger
from db.models import Customer
from db.repositories import balance as repo
from domain.balance import BalanceTxnType

router = APIRouter(prefix="/v1/customers", tags=["customers"])
log = structlog.get_logger()


@router.get("/{customer_id}/balance_transactions", response_model=list[BalanceTransactionOut])
async def list_balance_transactions(
    customer_id: str,
    session: SessionDep,
    _: CurrentKey,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> object:
    """The ledger, oldest first: positive entries add credit, negative ones use it."""
    if await session.get(Customer, customer_id) is None:
        raise not_found("customer", customer_id)
    return await repo.transactions(session, customer_id, limit=limit)


@router.post(
    "/{customer_id}/balance_transactions",
    status_code=201,
    response_model=BalanceTransactionOut,
)
async def create_balance_transaction(
    customer_id: str,
    body: BalanceTransactionIn,
    idem: IdempotencyDep,
    session: SessionDep,
    key: SupportKey,
) -> Any:
    """A manual credit (positive) or debit (negative; 409 `insufficient_balance` below 0),
    recorded with the caller as actor on the customer's timeline."""
    if (replay := await idem.replay()) is not None:
        return replay
    if await session.get(Customer, customer_id) is None:
        raise not_found("customer", customer_id)
    row = await balance_ledger.post(
        session,
        balance_ledger.Entry(
            customer_id=customer_id,
            currency=body.currency,
            amount=body.amount,
            type=BalanceTxnType.MANUAL,
            description=body.description,
            actor=key.actor,
        ),
        datetime.now(UTC),
    )
    out = BalanceTransactionOut.model_validate(row, from_attributes=True)
    return await idem.respond(201, out)
