"""Writing the customer balance ledger: one entry at a time per customer, under a lock on
the customer's row, so a debit never takes the balance below zero however many writers
(API requests, charge activities) race; an entry with a `source_key` is written once."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlmodel.ext.asyncio.session import AsyncSession

from db.models import BalanceTransaction, Event, Invoice
from db.repositories import balance as repo
from db.repositories import outbox
from domain import errors
from domain.balance import BalanceTxnType, balance_after
from domain.contracts import InvoiceDraft

log = structlog.get_logger()

BALANCE_UPDATED = "customer.balance_updated"


@dataclass(frozen=True)
class Entry:
    """An entry to append: positive adds credit, negative uses it."""

    customer_id: str
    currency: str
    amount: int
    type: BalanceTxnType
    description: str
    invoice_id: str | None = None
    subscription_id: str | None = None
    actor: str | None = None
    source_key: str | None = None


def new_entry_id() -> str:
    return f"cbtxn_{secrets.token_hex(12)}"


async def post(
    session: AsyncSession, entry: Entry, now: datetime, *, entry_id: str | None = None
) -> BalanceTransaction:
    """Append `entry` and its `customer.balance_updated` event (with webhook deliveries)
    in the session's transaction; the caller commits. 404-like DomainError when there is
    no such customer, 409 `insufficient_balance` when a debit exceeds the balance. An entry
    whose `source_key` is already written is returned as it was, not written again."""
    if entry.source_key is not None and (seen := await repo.by_source(session, entry.source_key)):
        return seen
    if not await repo.lock_customer(session, entry.customer_id):
        raise errors.RESOURCE_MISSING(f"No customer with id '{entry.customer_id}'")
    if entry.source_key is not None and (seen := await repo.by_source(session, entry.source_key)):
        return seen  # written by the writer we waited for
    before = await repo.available(session, entry.customer_id, entry.currency)
    balance_after(before, entry.amount)
    row = await repo.append(
        session,
        entry_id=entry_id or new_entry_id(),
        customer_id=entry.customer_id,
        currency=entry.currency,
        amount=entry.amount,
        balance_before=before,
        type_=entry.type,
        description=entry.description,
        now=now,
        invoice_id=entry.invoice_id,
        subscription_id=entry.subscription_id,
        actor=entry.actor,
        source_key=entry.source_key,
    )
    await _announce(session, row, now)
    log.info(
        "balance.entry_posted",
        customer_id=row.customer_id,
        entry_id=row.id,
        type=row.type,
        amount=row.amount,
        currency=row.currency,
        balance=row.balance_after,
    )
    return row


async def _announce(session: AsyncSession, row: BalanceTransaction, now: datetime) -> None:
    """The timeline entry (with the actor) and its webhook deliveries, in the customer's
    own lane (a balance belongs to no one subscription)."""
    event_id = f"evt_{secrets.token_hex(12)}"
    data = {
        "transaction_id": row.id,
        "type": row.type,
        "amount": row.amount,
        "currency": row.currency,
        "balance": row.balance_after,
        "invoice_id": row.invoice_id,
        "description": row.description,
    }
    session.add(
        Event(
            id=event_id,
            subscription_id=row.subscription_id,
            customer_id=row.customer_id,
            type=BALANCE_UPDATED,
            data=json.loads(json.dumps(data)),
            actor=row.actor,
            occurred_at=now,
            created_at=now,
        )
    )
    await session.flush()
    # Routed and due at the real time (`now` may be a test clock's, years ahead).
    await outbox.queue_webhooks(
        session, row.customer_id, event_id, BALANCE_UPDATED, datetime.now(UTC)
    )


async def credit_from(
    session: AsyncSession, invoice: InvoiceDraft, amount: int, description: str, now: datetime
) -> BalanceTransaction:
    """Credit `amount` to the balance of `invoice`'s customer as a `proration_credit` made
    by that invoice (a change's net credit, a credit note's unused time), once per
    invoice."""
    entry = Entry(
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        amount=amount,
        type=BalanceTxnType.PRORATION_CREDIT,
        description=description,
        invoice_id=invoice.id,
        subscription_id=invoice.subscription_id,
        source_key=credited_key(invoice.id),
    )
    return await post(session, entry, now)


def applied_key(invoice_id: str) -> str:
    return f"invoice_applied:{invoice_id}"


def credited_key(invoice_id: str) -> str:
    return f"invoice_credited:{invoice_id}"


def restored_key(invoice_id: str) -> str:
    return f"invoice_void:{invoice_id}"


async def apply_up_to(
    session: AsyncSession,
    *,
    customer_id: str,
    currency: str,
    invoice_id: str,
    subscription_id: str,
    wanted: int,
    now: datetime,
) -> int:
    """Use up to `wanted` of the customer's credit for an invoice, once per invoice: the
    amount applied (0 when there is none); a repeat returns what the first call applied."""
    if (seen := await repo.by_source(session, applied_key(invoice_id))) is not None:
        return -seen.amount
    if wanted <= 0 or await repo.available(session, customer_id, currency) <= 0:
        return 0  # the common case, answered without taking the customer's lock
    if not await repo.lock_customer(session, customer_id):
        return 0
    if (seen := await repo.by_source(session, applied_key(invoice_id))) is not None:
        return -seen.amount
    applied = min(wanted, await repo.available(session, customer_id, currency))
    if applied <= 0:
        return 0
    await post(
        session,
        Entry(
            customer_id=customer_id,
            currency=currency,
            amount=-applied,
            type=BalanceTxnType.APPLIED_TO_INVOICE,
            description=f"Applied to invoice {invoice_id}",
            invoice_id=invoice_id,
            subscription_id=subscription_id,
            source_key=applied_key(invoice_id),
        ),
        now,
    )
    return applied


async def restore_voided(session: AsyncSession, invoice_id: str, now: datetime) -> int:
    """Give back the credit a voided invoice had applied (once); the amount restored."""
    applied = await repo.by_source(session, applied_key(invoice_id))
    if applied is None or await repo.by_source(session, restored_key(invoice_id)) is not None:
        return 0
    if await invoice_status(session, invoice_id) != "void":
        return 0
    await post(
        session,
        Entry(
            customer_id=applied.customer_id,
            currency=applied.currency,
            amount=-applied.amount,
            type=BalanceTxnType.ADJUSTMENT,
            description=f"Invoice {invoice_id} was voided: its credit is restored",
            invoice_id=invoice_id,
            subscription_id=applied.subscription_id,
            source_key=restored_key(invoice_id),
        ),
        now,
    )
    return -applied.amount


async def invoice_status(session: AsyncSession, invoice_id: str) -> str | None:
    invoice = await session.get(Invoice, invoice_id)
    return invoice.status if invoice else None
