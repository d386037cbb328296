"""Charge and refund activities: money moves at most once per invoice attempt.

The rule: the attempt, with its idempotency key (subscription:invoice:attempt), is
committed to PostgreSQL *before* Stripe is called. A retry — after a crash, a timeout,
a lost response — finds that row and asks Stripe what happened under the key instead
of charging again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.stripe_gateway import InvalidPaymentRequest, PaymentResult, StripeGateway
from db.engine import transaction
from db.models import Customer, PaymentAttempt
from db.repositories import invoices as invoice_repo
from domain.contracts import ChargeOutcome, ChargeRequest, RefundOutcome, RefundRequest
from domain.dunning import is_hard_decline

log = structlog.get_logger()


def charge_key(subscription_id: str, invoice_id: str, attempt: int) -> str:
    return f"{subscription_id}:{invoice_id}:{attempt}"


class PaymentActivities:
    def __init__(self, engine: AsyncEngine, gateway: StripeGateway) -> None:
        self._engine = engine
        self._gateway = gateway
        # Test hook: called after Stripe answered and before the answer is recorded,
        # to prove a crash there does not charge twice.
        self.after_stripe_call: Callable[[str], None] | None = None

    async def aclose(self) -> None:
        await self._gateway.aclose()

    @activity.defn(name="charge_invoice")
    async def charge_invoice(self, req: ChargeRequest) -> ChargeOutcome:
        invoice = req.invoice
        key = charge_key(invoice.subscription_id, invoice.id, req.attempt_number)
        bound = log.bind(
            workflow_id=activity.info().workflow_id,
            subscription_id=invoice.subscription_id,
            invoice_id=invoice.id,
            attempt=req.attempt_number,
        )
        async with transaction(self._engine) as session:
            await invoice_repo.ensure_invoice(session, invoice)
            already_paid, attempt = await invoice_repo.charge_state(session, invoice.id, key)
            if already_paid is not None:
                # Another attempt (a support retry racing the schedule) collected it.
                return _outcome(already_paid)
            if attempt is not None and attempt.status != "pending":
                return _outcome(attempt)
            customer = await session.get(Customer, invoice.customer_id)
            now = datetime.now(UTC)
            if attempt is None:
                attempt = PaymentAttempt(
                    id=f"pa_{invoice.id.removeprefix('in_')}_{req.attempt_number}",
                    idempotency_key=key,
                    invoice_id=invoice.id,
                    subscription_id=invoice.subscription_id,
                    attempt_number=req.attempt_number,
                    amount=invoice.total,
                    currency=invoice.currency,
                    payment_method=customer.default_payment_method if customer else None,
                    status="pending",
                    actor=req.actor,
                    created_at=now,
                )
                session.add(attempt)
                first_try = True
            else:
                first_try = False
            if invoice.total <= 0:
                _finish(attempt, PaymentResult(status="succeeded", payment_intent_id=None), now)
                await invoice_repo.set_invoice_status(session, invoice.id, "paid", paid_at=now)
                return _outcome(attempt)
            if (
                customer is None
                or not customer.stripe_customer_id
                or not customer.default_payment_method
            ):
                _finish(
                    attempt,
                    PaymentResult(
                        status="failed",
                        payment_intent_id=None,
                        failure_code="no_payment_method",
                        failure_message="The customer has no payment method on file.",
                    ),
                    now,
                )
                return _outcome(attempt)
            stripe_customer, payment_method = (
                customer.stripe_customer_id,
                customer.default_payment_method,
            )
        # Committed: the key is on record before any money can move.

        result: PaymentResult | None = None
        if not first_try:
            result = await self._gateway.find_payment(
                stripe_customer_id=stripe_customer, idempotency_key=key
            )
            bound.info("charge.retry_lookup", found=result is not None)
        if result is None:
            try:
                result = await self._gateway.charge(
                    stripe_customer_id=stripe_customer,
                    payment_method=payment_method,
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
                result = PaymentResult(
                    status="failed",
                    payment_intent_id=None,
                    failure_code=err.code,
                    failure_message=err.message,
                )
                bound.error("charge.invalid_request", code=err.code)
        if self.after_stripe_call is not None:
            self.after_stripe_call(key)

        async with transaction(self._engine) as session:
            attempt = await invoice_repo.attempt_by_key(session, key, lock=True)
            assert attempt is not None
            now = datetime.now(UTC)
            if attempt.status == "pending":
                _finish(attempt, result, now)
                session.add(attempt)
            if attempt.status == "succeeded":
                await invoice_repo.set_invoice_status(session, invoice.id, "paid", paid_at=now)
        _count_outcome(attempt)
        bound.info(
            "charge.finished",
            status=attempt.status,
            amount=invoice.total,
            currency=invoice.currency,
            decline_code=attempt.decline_code,
            payment_intent_id=attempt.stripe_payment_intent_id,
        )
        return _outcome(attempt)

    @activity.defn(name="refund_invoice")
    async def refund_invoice(self, req: RefundRequest) -> RefundOutcome:
        """Refund part of a paid invoice and record the credit note; once per `refund_key`."""
        async with transaction(self._engine) as session:
            paid = await invoice_repo.succeeded_attempt(session, req.invoice_id)
            await invoice_repo.ensure_invoice(session, req.credit_note)
            await invoice_repo.set_invoice_status(
                session, req.credit_note.id, "paid", paid_at=datetime.now(UTC)
            )
        if paid is None or paid.stripe_payment_intent_id is None:
            return RefundOutcome(refunded=0)
        amount = min(req.amount, paid.amount)
        existing = await self._gateway.find_refund(
            payment_intent_id=paid.stripe_payment_intent_id, idempotency_key=req.refund_key
        )
        if existing is not None:
            return RefundOutcome(refunded=amount, stripe_refund_ids=[existing])
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
        return RefundOutcome(refunded=amount, stripe_refund_ids=[refund_id])


def _count_outcome(attempt: PaymentAttempt) -> None:
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


def _finish(attempt: PaymentAttempt, result: PaymentResult, now: datetime) -> None:
    attempt.status = "succeeded" if result.status == "succeeded" else "failed"
    attempt.stripe_payment_intent_id = result.payment_intent_id
    attempt.decline_code = result.decline_code
    attempt.failure_code = result.failure_code
    attempt.failure_message = result.failure_message
    attempt.completed_at = now


def _outcome(attempt: PaymentAttempt) -> ChargeOutcome:
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
