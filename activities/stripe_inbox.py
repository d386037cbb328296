"""The Stripe inbox drainer: hands recorded Stripe events to their subscriptions' workflows.

`POST /webhooks/stripe` records an event and the work it asks for (signal the workflow that
a payment succeeded) in `stripe_events`, in the transaction that marks the payment attempt
and its invoice paid, answers Stripe 2xx, and tries the signal once at once. Whatever that
try leaves undone, this loop, in every worker process, finishes:

* the signal is sent with a request id derived from the Stripe event id, so Temporal keeps
  one signal per event even when a try is repeated after a crash (or a lost answer) between
  the signal and the row's update;
* a signal that fails (Temporal unreachable, a timeout) is tried again with backoff, for as
  long as it takes;
* a payment for a subscription that has ended (`canceled`, `incomplete_expired`: its
  workflow is over, or ignores the payment) is refunded through Stripe: the refund's key,
  derived from the PaymentIntent, is committed on the row before Stripe is called, and a
  retry looks the refund up under that key before refunding (localstripe ignores
  Idempotency-Key), so a payment is refunded once however often its event comes. The
  timeline gets an `invoice.payment_refunded` event;
* what cannot be settled automatically (a refund Stripe refuses, a workflow that stays
  missing for a subscription that has not ended) is marked `needs_support`, logged, added
  to the timeline as `invoice.payment_unresolved` and counted in the
  `recur_stripe_events_needing_support` gauge.

Rows are claimed for a lease (as the notification outbox's are), so several worker
processes, and the API's first try, never work on one row at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import stripe
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.common import MetricGauge
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from activities.stripe_gateway import InvalidPaymentRequest, StripeGateway
from config import Settings
from db.engine import transaction
from db.repositories import stripe_inbox
from db.repositories.stripe_inbox import Item
from domain.notifications import DeliveryRetry
from domain.status import TERMINAL
from workflows.messages import PaymentSucceeded, workflow_id_for

log = structlog.get_logger()

# The name `SubscriptionWorkflow.payment_succeeded` is registered under (its method name).
PAYMENT_SUCCEEDED_SIGNAL = "payment_succeeded"
GAUGE_SECONDS = 30.0
_REQUEST_IDS = uuid.UUID("6f1c2a4e-5b1d-4f0e-9a57-2f3c8e1d7b90")


class Signaled(enum.Enum):
    SENT = "sent"
    NOT_FOUND = "not_found"  # no running workflow under the id (ended, or not started yet)
    FAILED = "failed"  # anything else: try again later


@dataclass(frozen=True)
class SignalResult:
    outcome: Signaled
    error: str | None = None


def signal_request_id(stripe_event_id: str) -> str:
    """The same for every try of one event: Temporal drops a signal whose request id the
    run has already seen."""
    return str(uuid.uuid5(_REQUEST_IDS, stripe_event_id))


def refund_key(payment_intent_id: str) -> str:
    """One refund per PaymentIntent, whichever event (or delivery of one) asks for it."""
    return f"ended:{payment_intent_id}:refund"


def timeline_event_id(stripe_event_id: str, event_type: str) -> str:
    """The same for every try, so a repeated write adds nothing to the timeline."""
    return f"evt_{uuid.uuid5(_REQUEST_IDS, f'{event_type}:{stripe_event_id}').hex[:24]}"


async def signal_payment(client: Client, item: Item, timeout: timedelta) -> SignalResult:
    """Send `payment_succeeded` for `item` to its subscription's workflow, once per event.

    The signal request is built here rather than by `WorkflowHandle.signal`, which gives
    every call a fresh request id, to set the id Temporal deduplicates on."""
    request = SignalWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=workflow_id_for(item.subscription_id)),
        signal_name=PAYMENT_SUCCEEDED_SIGNAL,
        identity=client.identity,
        request_id=signal_request_id(item.id),
    )
    message = PaymentSucceeded(invoice_id=item.invoice_id, payment_intent_id=item.payment_intent_id)
    try:
        request.input.payloads.extend(await client.data_converter.encode([message]))
        # No retries inside the call: the caller's backoff is the retry.
        await client.workflow_service.signal_workflow_execution(
            request, retry=False, timeout=timeout
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return SignalResult(Signaled.NOT_FOUND, err.message)
        return SignalResult(Signaled.FAILED, f"{err.status.name}: {err.message}")
    except Exception as err:  # connection refused, no client yet, ...
        return SignalResult(Signaled.FAILED, f"{type(err).__name__}: {err}")
    return SignalResult(Signaled.SENT)


class StripeInbox:
    def __init__(
        self,
        engine: AsyncEngine,
        client: Client,
        gateway: StripeGateway,
        retry: DeliveryRetry,
        *,
        poll_seconds: float = 1.0,
        lease: timedelta = timedelta(seconds=120),
        signal_timeout: timedelta = timedelta(seconds=5),
        batch: int = 20,
        on_queued: Callable[[], None] | None = None,
        gauge: MetricGauge | None = None,
    ) -> None:
        self._engine = engine
        self._client = client
        self._gateway = gateway
        # Backoff of every retry; `max_attempts` bounds only the wait for a workflow that is
        # missing while its subscription has not ended (not started yet, or never will be).
        self._retry = retry
        self._poll_seconds = poll_seconds
        # Longer than a signal (RECUR_STRIPE_SIGNAL_TIMEOUT_SECONDS) and a refund (the Stripe
        # SDK's 80 s timeout) can take.
        self._lease = lease
        self._signal_timeout = signal_timeout
        self._batch = batch
        self._on_queued = on_queued  # webhook deliveries were queued: wake the dispatcher
        self._gauge = gauge
        self._gauge_due = 0.0  # loop time of the gauge's next refresh
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls,
        engine: AsyncEngine,
        client: Client,
        settings: Settings,
        on_queued: Callable[[], None] | None = None,
    ) -> StripeInbox:
        runtime = client.service_client.config.runtime or Runtime.default()
        gauge = runtime.metric_meter.create_gauge(
            "recur_stripe_events_needing_support",
            "Stripe events waiting for a person (stripe_events.status = needs_support)",
        )
        return cls(
            engine,
            client,
            StripeGateway.from_settings(settings),
            DeliveryRetry(
                initial_ms=settings.stripe_inbox_retry_initial_ms,
                max_ms=settings.stripe_inbox_retry_max_ms,
                max_attempts=settings.stripe_inbox_max_attempts,
            ),
            poll_seconds=settings.stripe_inbox_poll_seconds,
            lease=timedelta(seconds=settings.stripe_inbox_lease_seconds),
            signal_timeout=timedelta(seconds=settings.stripe_signal_timeout_seconds),
            on_queued=on_queued,
            gauge=gauge,
        )

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="stripe-inbox")

    async def stop(self, timeout: float = 10.0) -> None:
        """Claim no more; finish the rows in hand (up to `timeout`: the claims of rows cut
        short run out and another worker takes them); close the Stripe client."""
        self._stopping = True
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout)
            self._task = None
        await self._gateway.aclose()

    async def run(self) -> None:
        while not self._stopping:
            try:
                handled = await self.drain_once()
            except Exception:
                log.exception("stripe_inbox.drain_failed")
                handled = 0
            if handled < self._batch:
                await asyncio.sleep(self._poll_seconds)

    async def drain_once(self, now: datetime | None = None) -> int:
        """Claim the rows due at `now` (default: now) and work on each; returns how many."""
        now = now or datetime.now(UTC)
        async with transaction(self._engine) as session:
            items = await stripe_inbox.claim(
                session, limit=self._batch, now=now, until=now + self._lease
            )
        # At once, so a batch takes as long as its slowest row, well within the lease.
        await asyncio.gather(*(self._process_logged(item) for item in items))
        await self._refresh_gauge(changed=bool(items))
        return len(items)

    async def _process_logged(self, item: Item) -> None:
        try:
            await self.process(item)
        except Exception:
            # Our database or a bug: the claim runs out and the row is tried again.
            log.exception("stripe_inbox.process_failed", stripe_event_id=item.id)

    async def _refresh_gauge(self, *, changed: bool) -> None:
        """Count the rows waiting for a person when this drainer flagged one, and every
        `GAUGE_SECONDS` (other workers flag rows, people settle them)."""
        loop = asyncio.get_running_loop()
        if self._gauge is None or not (changed or loop.time() >= self._gauge_due):
            return
        self._gauge_due = loop.time() + GAUGE_SECONDS
        async with transaction(self._engine) as session:
            self._gauge.set(await stripe_inbox.count_needing_support(session))

    async def process(self, item: Item) -> None:
        """One claimed row: signal, refund, retry later, or flag for support."""
        if item.status == "refunding" or await self._ended(item):
            await self._refund(item)
            return
        result = await signal_payment(self._client, item, self._signal_timeout)
        if result.outcome is Signaled.SENT:
            async with transaction(self._engine) as session:
                await stripe_inbox.done(session, item.id, datetime.now(UTC))
            log.info(
                "stripe.event_signaled",
                stripe_event_id=item.id,
                subscription_id=item.subscription_id,
                attempts=item.attempts,
            )
            return
        if result.outcome is Signaled.NOT_FOUND:
            if await self._ended(item):  # it ended since we looked
                await self._refund(item)
                return
            if item.attempts >= self._retry.max_attempts:
                await self._give_up(item, f"workflow not found: {result.error}")
                return
        await self._later(item, result.error or result.outcome.value)

    async def _ended(self, item: Item) -> bool:
        async with transaction(self._engine) as session:
            state = await stripe_inbox.subscription_state(session, item.subscription_id)
        return state is not None and state[0] in TERMINAL

    async def _later(self, item: Item, error: str) -> None:
        delay = self._retry.delay_after(item.attempts)
        async with transaction(self._engine) as session:
            await stripe_inbox.retry_at(session, item.id, datetime.now(UTC) + delay, error)
        log.warning(
            "stripe.event_retry",
            stripe_event_id=item.id,
            subscription_id=item.subscription_id,
            attempts=item.attempts,
            retry_in_seconds=delay.total_seconds(),
            error=error,
        )

    async def _refund(self, item: Item) -> None:
        """Give back a payment its ended subscription cannot use; once per PaymentIntent."""
        key = refund_key(item.payment_intent_id)
        if item.refund_key is None:
            async with transaction(self._engine) as session:
                mine = await stripe_inbox.start_refund(session, item.id, key)
                if not mine:
                    await stripe_inbox.done(session, item.id, datetime.now(UTC))
            if not mine:
                log.info(
                    "stripe.refund_held_by_other_event",
                    stripe_event_id=item.id,
                    payment_intent_id=item.payment_intent_id,
                )
                return
        # The key is on record: from here on, a retry asks Stripe before refunding.
        try:
            refund_id = await self._gateway.find_refund(
                payment_intent_id=item.payment_intent_id, idempotency_key=key
            ) or await self._gateway.refund(
                payment_intent_id=item.payment_intent_id,
                amount=item.amount,
                idempotency_key=key,
            )
        except InvalidPaymentRequest as err:
            await self._give_up(item, f"refund refused by Stripe: {err.code}: {err.message}")
            return
        except stripe.StripeError as err:
            await self._later(item, f"refund failed: {type(err).__name__}: {err}")
            return
        now = datetime.now(UTC)
        async with transaction(self._engine) as session:
            await stripe_inbox.refunded(session, item.id, refund_id, now)
            queued = await self._timeline(
                session,
                item,
                "invoice.payment_refunded",
                now,
                refund_id=refund_id,
                reason="subscription_ended",
            )
        if queued and self._on_queued is not None:
            self._on_queued()
        log.warning(
            "stripe.ended_subscription_payment_refunded", refund_id=refund_id, **item.log_fields()
        )

    async def _give_up(self, item: Item, error: str) -> None:
        now = datetime.now(UTC)
        async with transaction(self._engine) as session:
            await stripe_inbox.needs_support(session, item.id, error)
            queued = await self._timeline(
                session, item, "invoice.payment_unresolved", now, reason=error
            )
        if queued and self._on_queued is not None:
            self._on_queued()
        log.error("stripe.event_needs_support", error=error, **item.log_fields())

    async def _timeline(
        self, session: AsyncSession, item: Item, event_type: str, now: datetime, **data: object
    ) -> bool:
        state = await stripe_inbox.subscription_state(session, item.subscription_id)
        queued = await stripe_inbox.write_event(
            session,
            event_id=timeline_event_id(item.id, event_type),
            subscription_id=item.subscription_id,
            customer_id=state[1] if state else None,
            event_type=event_type,
            data={
                "invoice_id": item.invoice_id,
                "payment_intent_id": item.payment_intent_id,
                "amount": item.amount,
                "currency": item.currency,
                "stripe_event_id": item.id,
                "subscription_status": state[0] if state else None,
                **data,
            },
            now=now,
        )
        return bool(queued)
