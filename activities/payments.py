"""Charge and refund activities: money moves at most once per invoice attempt.

The rule: the attempt, with its idempotency key (subscription:invoice:attempt), is
committed to PostgreSQL *before* Stripe is called. A retry — after a crash, a timeout,
a lost response — finds that row and asks Stripe what happened under the key instead
of charging again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from activities.invoice_balance import settle_balance
from activities.stripe_gateway import InvalidPaymentRequest, PaymentResult, StripeGateway
from db import balance_ledger
from db.engine import transaction
from db.repositories import balance as balance_repo
from db.repositories import charges
from db.repositories import invoices as invoice_repo
from db.repositories.invoices import CREDITED
from domain.contracts import (
    ChargeOutcome,
    ChargeRequest,
    RefundOutcome,
    RefundRequest,
    SyncRequest,
)
from domain.dunning import is_hard_decline

log = structlog.get_logger()


def charge_key(subscription_id: str, invoice_id: str, attempt: int) -> str:
    return f"{subscription_id}:{invoice_id}:{attempt}"


class PaymentActivities:
    def __init__(
        self,
        engine: AsyncEngine,
        gateway: StripeGateway,
        project: Callable[[SyncRequest], Awaitable[None]] | None = None,
    ) -> None:
        self._engine = engine
        # Writes a request's `on_paid` projection (LedgerActivities.project); without it
        # the workflow projects a paid renewal with a local activity of its own.
        self._project = project
        # Each charge statement runs on its own (db.repositories.charges).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._gateway = gateway
        # Test hook: called after Stripe answered and before the answer is recorded,
        # to prove a crash there does not charge twice.
        self.after_stripe_call: Callable[[str], None] | None = None

    async def aclose(self) -> None:
        await self._gateway.aclose()

    @activity.defn(name="charge_invoice")
    async def charge_invoice(self, req: ChargeRequest) -> ChargeOutcome:
        # The customer's credit first: the invoice charged is the one with its balance line.
        invoice = await settle_balance(
            self._engine, req.invoice, req.clock_time or datetime.now(UTC)
        )
        if invoice is not req.invoice:
            req = req.model_copy(update={"invoice": invoice})
        key = charge_key(invoice.subscription_id, invoice.id, req.attempt_number)
        bound = log.bind(
            workflow_id=activity.info().workflow_id,
            subscription_id=invoice.subscription_id,
            invoice_id=invoice.id,
            attempt=req.attempt_number,
        )
        async with self._autocommit.connect() as conn:
            opened = await charges.open_attempt(
                conn,
                invoice,
                key=key,
                attempt_id=f"pa_{invoice.id.removeprefix('in_')}_{req.attempt_number}",
                attempt_number=req.attempt_number,
                actor=req.actor,
                now=req.clock_time or datetime.now(UTC),
            )
        # Committed: the key is on record before any money can move.
        if opened.paid is not None:
            # Collected already: by this attempt, before a crash or a lost answer (then its
            # projection may be missing too), or by another (a support retry racing the
            # schedule).
            return await self._paid_or_failed(req, key, opened.paid)
        attempt = opened.mine
        if attempt is None:
            # Another run of this very attempt inserted the key between our look and our
            # insert: try again, and find it.
            raise RuntimeError(f"charge {key} is being opened concurrently")
        if attempt.status != "pending":
            return _outcome(attempt)

        result = await self._collect(req, key, opened, bound)
        if self.after_stripe_call is not None:
            self.after_stripe_call(key)

        async with self._autocommit.connect() as conn:
            attempt = await charges.settle_attempt(
                conn,
                key=key,
                invoice_id=invoice.id,
                result=result,
                now=req.clock_time or datetime.now(UTC),
            )
        _count_outcome(attempt)
        bound.info(
            "charge.finished",
            status=attempt.status,
            amount=invoice.total,
            currency=invoice.currency,
            decline_code=attempt.decline_code,
            payment_intent_id=attempt.stripe_payment_intent_id,
        )
        return await self._paid_or_failed(req, key, attempt)

    async def _paid_or_failed(
        self, req: ChargeRequest, key: str, attempt: charges.Attempt
    ) -> ChargeOutcome:
        """The outcome; when this very attempt is paid, its `on_paid` projection written."""
        outcome = _outcome(attempt)
        mine = attempt.idempotency_key == key
        if req.on_paid is None or self._project is None or not mine or outcome.status != "paid":
            return outcome
        await self._project(req.on_paid)
        return outcome.model_copy(update={"projected": True})

    async def _collect(
        self,
        req: ChargeRequest,
        key: str,
        opened: charges.Opened,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> charges.Settlement:
        """Stripe's answer for the pending attempt under `key` (asking first on a retry)."""
        invoice = req.invoice
        if invoice.total <= 0:
            return charges.Settlement(status="succeeded")
        if not opened.stripe_customer_id or not opened.payment_method:
            return charges.Settlement(
                status="failed",
                failure_code="no_payment_method",
                failure_message="The customer has no payment method on file.",
            )
        result: PaymentResult | None = None
        if not opened.created:
            result = await self._gateway.find_payment(
                stripe_customer_id=opened.stripe_customer_id, idempotency_key=key
            )
            bound.info("charge.retry_lookup", found=result is not None)
        if result is None:
            try:
                result = await self._gateway.charge(
                    stripe_customer_id=opened.stripe_customer_id,
                    payment_method=opened.payment_method,
                    amount=invoice.total,
                    currency=invoice.currency,
                    idempotency_key=key,
                    metadata={
                        "recur_subscription_id": invoice.subscription_id,
                        "recur_invoice_id": invoice.id,
                        "recur_attempt": str(req.attempt_number),
                    },
                )
            except InvalidPaymentRequest as err:
                # No retry fixes a request Stripe rejects; record it as a failed attempt
                # the subscription can act on (dunning waits for a new payment method).
                bound.error("charge.invalid_request", code=err.code)
                return charges.Settlement(
                    status="failed", failure_code=err.code, failure_message=err.message
                )
        return charges.Settlement(
            status="succeeded" if result.status == "succeeded" else "failed",
            payment_intent_id=result.payment_intent_id,
            decline_code=result.decline_code,
            failure_code=result.failure_code,
            failure_message=result.failure_message,
        )

    @activity.defn(name="refund_invoice")
    async def refund_invoice(self, req: RefundRequest) -> RefundOutcome:
        """Refund part of a paid invoice and record the credit note; once per `refund_key`."""
        async with transaction(self._engine) as session:
            paid = await invoice_repo.succeeded_attempt(session, req.invoice_id)
            await invoice_repo.ensure_invoice(session, req.credit_note)
            # A credit note is issued, never paid: no paid_at; its time is its created_at,
            # the workflow's (test-clock) time.
            await invoice_repo.set_invoice_status(session, req.credit_note.id, CREDITED)
            credited = await _credit_back(session, req) if req.to_balance > 0 else 0
        if paid is None or paid.stripe_payment_intent_id is None:
            return RefundOutcome(refunded=0, to_balance=credited)
        amount = min(req.amount, paid.amount)
        existing = await self._gateway.find_refund(
            payment_intent_id=paid.stripe_payment_intent_id, idempotency_key=req.refund_key
        )
        if existing is not None:
            return RefundOutcome(refunded=amount, stripe_refund_ids=[existing], to_balance=credited)
        refund_id = await self._gateway.refund(
            payment_intent_id=paid.stripe_payment_intent_id,
            amount=amount,
            idempotency_key=req.refund_key,
        )
        log.info(
            "refund.created",
            subscription_id=req.subscription_id,
            invoice_id=req.invoice_id,
            amount=amount,
        )
        return RefundOutcome(refunded=amount, stripe_refund_ids=[refund_id], to_balance=credited)


def _count_outcome(attempt: charges.Attempt) -> None:
    """Business counters on the worker's Prometheus endpoint (SDK metric meter)."""
    meter = activity.metric_meter()
    labels = {"currency": attempt.currency}
    if attempt.status == "succeeded":
        meter.create_counter("recur_charges_succeeded", "Succeeded charges").add(1, labels)
        if attempt.attempt_number > 1:
            meter.create_counter(
                "recur_recovered_revenue", "Minor units collected by a retry", "minor_units"
            ).add(attempt.amount, labels)
    else:
        meter.create_counter("recur_charges_failed", "Failed charge attempts").add(1, labels)


def _outcome(attempt: charges.Attempt) -> ChargeOutcome:
    return ChargeOutcome(
        status="paid" if attempt.status == "succeeded" else "failed",
        invoice_id=attempt.invoice_id,
        attempt_number=attempt.attempt_number,
        amount=attempt.amount,
        payment_intent_id=attempt.stripe_payment_intent_id,
        decline_code=attempt.decline_code,
        failure_code=attempt.failure_code,
        failure_message=attempt.failure_message,
        hard_decline=is_hard_decline(attempt.decline_code),
        no_payment_method=attempt.failure_code == "no_payment_method",
    )


async def _credit_back(session: AsyncSession, req: RefundRequest) -> int:
    """The credit note's part that was paid from the balance goes back to it (keyed by the
    note: a retried refund writes it once); at most what the balance paid of the period's
    invoices. Returns the amount credited."""
    note = req.credit_note
    paid_from_balance = (
        await balance_repo.applied_to_period(session, req.subscription_id, req.period_start)
        if req.period_start is not None
        else 0
    )
    amount = min(req.to_balance, paid_from_balance)
    if amount <= 0:
        return 0
    description = f"Unused time paid from the balance, credit note {note.id}"
    entry = await balance_ledger.credit_from(session, note, amount, description, note.created_at)
    return entry.amount
