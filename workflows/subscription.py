"""SubscriptionWorkflow: one durable workflow owns one subscription's whole life.

Read top to bottom it is the lifecycle: start (trial or first charge), then a loop that
waits for the next thing due — trial ending, period end, a dunning retry, expiry of an
incomplete first payment, the end of a pause — and does it. Updates (change plan,
cancel, pause, ...) validate first, so a rejected request leaves no trace, then change
state under the same lock the loop uses. A run covers up to `PERIODS_PER_RUN` renewals
(a year of a monthly plan), then continues as new, so history stays bounded.

Side effects happen only in activities, called by name so this module never imports
the Stripe or database code. The charge and the projection run as local activities:
both are idempotent (the charge records its idempotency key in PostgreSQL before Stripe
is called), so the worker may run them again after a crash, and a renewal costs one
workflow task instead of a round trip through the server for each activity. A renewal
decides its paid projection before the charge and hands it to the charge activity, which
writes it once the charge is paid: one local activity per paid renewal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

from domain import errors
from domain.contracts import (
    ChargeOutcome,
    ChargeRequest,
    DunningView,
    EventDraft,
    InvoiceDraft,
    PauseView,
    PendingChangeView,
    PlanSnapshot,
    RefundOutcome,
    RefundRequest,
    SubscriptionView,
    SyncRequest,
)
from domain.dunning import ExhaustedAction, next_retry_at
from domain.errors import DomainError
from domain.invoices import InvoiceLine
from domain.periods import next_boundary_after
from domain.status import SubscriptionStatus as S
from workflows.clock import WorkflowClock
from workflows.details import changed_only, current_details, search_attribute_updates
from workflows.errors import rejected
from workflows.invoicing import (
    allocate_refund,
    carry_credit,
    opening_line,
    partial_period_line,
    period_line,
    unused_time_credit,
)
from workflows.messages import (
    ActorRequest,
    AdvanceClock,
    AdvanceResult,
    CancelRequest,
    CarriedState,
    ChangePlanRequest,
    ChangePlanResult,
    ExtendTrialRequest,
    PauseRequest,
    PaymentMethodChanged,
    PaymentSucceeded,
    PeriodPayment,
    SubscriptionInput,
)
from workflows.patches import (
    ADVANCE_WAITS_FOR_FINAL_PROJECTION,
    CANCEL_REQUEST_CANCELS,
    CHARGE_PROJECTS_FIRST_PAYMENT,
    CHARGE_PROJECTS_RENEWAL,
    DURABLE_UPDATE_CHARGES,
    LEAN_RENEWALS,
    SEARCH_ATTRIBUTES_ON_CHANGE,
    RunPatches,
)
from workflows.plan_changes import (
    Billing,
    ChangeQuote,
    InvoicePlan,
    anchor_after_change,
    check_trial_change,
    decide,
    decision_summary,
    period_after,
    preview_invoice,
    quote_change,
    upcoming_renewal,
)
from workflows.projection import (
    event_draft,
    initial_state,
    subscription_view,
    sync_request,
    trial_start,
)

T = TypeVar("T")

TERMINAL = frozenset({S.CANCELED, S.INCOMPLETE_EXPIRED})
MAX_TRIAL = timedelta(days=730)  # as for `trial_days` when subscribing
MAX_PAUSE = timedelta(days=730)

# Charges retry transient failures (network, rate limits, 5xx) with backoff; card
# declines come back as a normal "failed" outcome, not as an activity failure.
CHARGE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
)
SYNC_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=30)
)

# A run renews at most this many times (a year of a monthly plan) and continues as new
# earlier if its history grows past HISTORY_PER_RUN events (dunning, many plan changes).
# Longer runs mean fewer new runs (the costliest part of a renewal); shorter runs mean
# less to replay when the worker has evicted the workflow from its cache.
PERIODS_PER_RUN = 12
HISTORY_PER_RUN = 1000


@workflow.defn
class SubscriptionWorkflow:
    @workflow.init
    def __init__(self, inp: SubscriptionInput) -> None:
        self._in = inp
        carried = inp.carried
        self._clock = WorkflowClock(
            inp.test_clock_id,
            carried.clock_now if carried else inp.clock_now,
            carried.clock_cursor if carried else None,
        )
        self._s: CarriedState = carried or initial_state(inp, self._clock.now())
        self._started = carried is not None
        self._dirty = False
        self._continuing = False
        self._finished = False
        self._lock = asyncio.Lock()
        self._last_outcome: ChargeOutcome | None = None
        self._renewals_in_run = 0
        self._patches = RunPatches()
        # An update that may lead to a charge was delivered and may not be in history yet.
        self._update_not_durable = False
        # Temporal was asked to cancel the workflow while an activity was in flight.
        self._cancel_requested = False

    # ------------------------------------------------------------------ lifecycle

    @workflow.run
    async def run(self, inp: SubscriptionInput) -> SubscriptionView:
        self._patches.at_run_start()
        try:
            await self._live()
        except asyncio.CancelledError:
            # An operator asked Temporal to cancel the workflow (the UI's "Request
            # Cancellation", `temporal workflow cancel`): that ends the subscription like
            # an immediate cancel, not the workflow behind the read model's back.
            if not self._patches.use(CANCEL_REQUEST_CANCELS):
                raise
            await self._cancel_as_requested_in_temporal()
        self._finished = True  # only now is the final state projected
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view()

    async def _live(self) -> None:
        """The first decision, then every step that falls due, until the end."""
        if not self._started:
            async with self._lock:
                await self._begin()
            self._started = True
        while self.status not in TERMINAL:
            if self._cancel_requested:
                await self._cancel_as_requested_in_temporal()
                return
            step, due = self._next_step()
            woken = await self._clock.wait(due, lambda: self._dirty)
            if woken:
                self._dirty = False
                continue  # something changed: recompute what is due next
            async with self._lock:
                if self._next_step() != (step, due):
                    continue  # a handler moved things while we queued for the lock
                renewed = await self._perform(step)
            if self._run_is_full(renewed):
                await self._continue_as_new()

    async def _begin(self) -> None:
        """Trial, or the first charge; decides the state the creating API call returns."""
        s = self._s
        now = self._now()
        if s.status == S.TRIALING:
            await self._project(trial_start(self._in, s, now, self._new_id))
            return
        created = self._event("subscription.created", plan_id=s.plan.plan_id)
        start = now
        end = next_boundary_after(
            s.billing_cycle_anchor, s.plan.interval, s.plan.interval_count, now
        )
        if s.billing_cycle_anchor > now:
            line = partial_period_line(s.plan, s.billing_cycle_anchor, start, end)
        else:
            line = period_line(s.plan, start, end)
        invoice = self._invoice("subscription_create", [line], start, end)
        if self._patches.use(CHARGE_PROJECTS_FIRST_PAYMENT):
            self._start_period(start, end)
            outcome = await self._charge_projected(invoice, [created], self._activated)
            if outcome.projected:
                return
        else:
            outcome = await self._charge(invoice, 1)
            self._start_period(start, end)
        if outcome.status == "paid":
            s.status = S.ACTIVE
            self._record_paid(invoice, outcome)
            await self._sync(
                [
                    created,
                    *self._paid_events(invoice, outcome),
                    self._event("subscription.activated"),
                ],
                features=s.plan.features,
            )
        else:
            s.status = S.INCOMPLETE
            s.open_invoice = invoice
            s.incomplete_attempts = 1
            await self._sync(
                [
                    created,
                    self._failed_event(invoice, outcome),
                    self._event("subscription.incomplete"),
                ],
                features=[],
            )

    def _next_step(self) -> tuple[str, datetime | None]:
        """What the subscription waits for next, and when it is due (None: only a message)."""
        s = self._s
        if s.status == S.TRIALING:
            assert s.trial_end is not None
            warn_at = s.trial_end - timedelta(days=self._in.policy.trial_will_end_days)
            if not s.trial_will_end_sent:
                return "trial_will_end", warn_at
            return "trial_end", s.trial_end
        if s.status == S.ACTIVE:
            assert s.current_period_end is not None
            return "period_end", s.current_period_end
        if s.status in (S.PAST_DUE, S.UNPAID):
            if s.dunning.awaiting_payment_method or s.dunning.next_retry_at is None:
                return "await_payment_method", None
            return "dunning_retry", s.dunning.next_retry_at
        if s.status == S.INCOMPLETE:
            expires_at = s.created_at + timedelta(hours=self._in.policy.incomplete_expiry_hours)
            retry_at = s.dunning.next_retry_at
            if retry_at is not None and retry_at < expires_at:
                return "dunning_retry", retry_at  # a new payment method arrived
            return "incomplete_expire", expires_at
        if s.status == S.PAUSED:
            return "resume", s.pause.resumes_at if s.pause else None
        return "none", None

    async def _perform(self, step: str) -> bool:
        """Do the due step; True when a new period began (time to continue as new)."""
        if step == "trial_will_end":
            self._s.trial_will_end_sent = True
            await self._sync(
                [self._event("subscription.trial_will_end", trial_end=self._s.trial_end)]
            )
            return False
        if step == "trial_end":
            return await self._end_trial()
        if step == "period_end":
            return await self._period_end()
        if step == "dunning_retry":
            await self._retry_open_invoice(actor=None)
            return False
        if step == "incomplete_expire":
            await self._expire_incomplete()
            return False
        if step == "resume":
            await self._resume(actor=None)
            return True
        return False

    async def _end_trial(self) -> bool:
        s = self._s
        assert s.trial_end is not None
        if s.cancel_at_period_end:
            # Canceled during the trial: it ends with the trial, uncharged.
            await self._cancel_now(reason="cancel_at_period_end", actor=None, settle=True)
            return False
        start = s.trial_end
        line, end = opening_line(s.plan, s.billing_cycle_anchor, start)
        invoice = self._invoice("subscription_cycle", [line], start, end)
        self._start_period(start, end)
        s.trial_end = start
        if self._patches.use(CHARGE_PROJECTS_FIRST_PAYMENT):
            outcome = await self._charge_projected(invoice, [], self._activated)
            if outcome.projected:
                return True
        else:
            outcome = await self._charge(invoice, 1)
        if outcome.status == "paid":
            s.status = S.ACTIVE
            self._record_paid(invoice, outcome)
            await self._sync(
                [*self._paid_events(invoice, outcome), self._event("subscription.activated")],
                features=s.plan.features,
            )
            return True
        if outcome.no_payment_method:
            # Design rule: a trial that ends with no way to pay is canceled.
            await self._cancel_now(
                reason="trial_ended_without_payment_method", actor=None, void=invoice.id
            )
            return False
        await self._enter_dunning(invoice, outcome)
        return False

    async def _period_end(self) -> bool:
        s = self._s
        assert s.current_period_end is not None
        if s.cancel_at_period_end:
            await self._cancel_now(reason="cancel_at_period_end", actor=None, settle=True)
            return False
        start = s.current_period_end
        events = self._apply_pending_plan(start, when="period_end")
        start, end = period_after(s.plan, s.billing_cycle_anchor, start)
        invoice = self._next_invoice("subscription_cycle", start, end)
        self._start_period(start, end)
        if self._patches.use(CHARGE_PROJECTS_RENEWAL):

            def renewed(paid: CarriedState) -> list[EventDraft]:
                paid.renewals += 1
                return [self._event("subscription.renewed", period_end=end)]

            outcome = await self._charge_projected(invoice, events, renewed)
            if outcome.projected:
                return True
            # Failed, or paid by another attempt: decided below from the outcome.
        else:
            outcome = await self._charge(invoice, 1)
        if outcome.status == "paid":
            s.renewals += 1
            self._record_paid(invoice, outcome)
            await self._sync(
                [
                    *events,
                    *self._paid_events(invoice, outcome),
                    self._event("subscription.renewed", period_end=end),
                ],
                features=s.plan.features,
            )
            return True
        await self._enter_dunning(invoice, outcome, extra=events)
        return False

    async def _charge_projected(
        self,
        invoice: InvoiceDraft,
        before: list[EventDraft],
        when_paid: Callable[[CarriedState], list[EventDraft]],
    ) -> ChargeOutcome:
        """Charge attempt 1 of `invoice` with the projection of its paid case decided first,
        for the charge activity to write once it is paid: one local activity instead of two.
        The paid case is made on a copy of the state (`when_paid` changes it and returns the
        events after `invoice.paid`; `before` come first), exactly as the unprojected paid
        branch would make it; the copy becomes the state only if the outcome is projected."""
        paid = self._s.model_copy(deep=True)
        paid.latest_invoice_id = invoice.id
        expected = ChargeOutcome(
            status="paid", invoice_id=invoice.id, attempt_number=1, amount=invoice.total
        )
        self._record_paid(invoice, expected, paid)
        events = [*before, *self._paid_events(invoice, expected), *when_paid(paid)]
        request = sync_request(
            self._in, paid, events, self._now(), self._new_id, features=paid.plan.features
        )
        outcome = await self._charge(invoice, 1, on_paid=request)
        if outcome.projected:
            # Nothing else touched the state meanwhile: updates wait for the lock we hold,
            # and the signals change only a past-due or incomplete subscription.
            self._s = paid
            self._publish()
        return outcome

    # ------------------------------------------------------------------ dunning

    async def _enter_dunning(
        self, invoice: InvoiceDraft, outcome: ChargeOutcome, extra: list[EventDraft] | None = None
    ) -> None:
        s = self._s
        now = self._now()
        s.status = S.PAST_DUE
        s.open_invoice = invoice
        hard = outcome.hard_decline or outcome.no_payment_method
        s.dunning = DunningView(
            attempts=1,
            first_failure_at=now,
            awaiting_payment_method=hard,
            next_retry_at=None if hard else next_retry_at(now, 0, self._in.policy.dunning),
        )
        await self._sync(
            [
                *(extra or []),
                self._failed_event(invoice, outcome),
                self._event("subscription.past_due", next_retry_at=s.dunning.next_retry_at),
            ],
            # Entitlements stay during the dunning grace (design rule).
            features=s.plan.features,
        )

    async def _retry_open_invoice(self, actor: str | None) -> ChargeOutcome:
        s = self._s
        invoice = s.open_invoice
        assert invoice is not None
        attempt = (s.incomplete_attempts if s.status == S.INCOMPLETE else s.dunning.attempts) + 1
        outcome = await self._charge(invoice, attempt, actor=actor)
        if outcome.status == "paid":
            was = s.status
            s.status = S.ACTIVE
            s.open_invoice = None
            s.dunning = DunningView()
            self._record_paid(invoice, outcome)
            events = [*self._paid_events(invoice, outcome, actor=actor)]
            events.append(
                self._event(
                    "subscription.activated" if was == S.INCOMPLETE else "subscription.recovered",
                    actor=actor,
                )
            )
            await self._sync(events, features=s.plan.features)
            return outcome
        if s.status == S.INCOMPLETE:
            s.incomplete_attempts += 1
            s.dunning.next_retry_at = None
            await self._sync([self._failed_event(invoice, outcome, actor=actor)])
            return outcome
        retries_done = s.dunning.attempts  # attempts includes the first failure
        s.dunning.attempts += 1
        hard = outcome.hard_decline or outcome.no_payment_method
        nxt = (
            None
            if hard
            else next_retry_at(
                s.dunning.first_failure_at or self._now(), retries_done, self._in.policy.dunning
            )
        )
        if nxt is None and not hard:
            await self._sync([self._failed_event(invoice, outcome, actor=actor)])
            await self._dunning_exhausted()
            return outcome
        s.dunning.awaiting_payment_method = hard
        s.dunning.next_retry_at = nxt
        await self._sync([self._failed_event(invoice, outcome, actor=actor)])
        return outcome

    async def _dunning_exhausted(self) -> None:
        s = self._s
        invoice_id = s.open_invoice.id if s.open_invoice else None
        if self._in.policy.dunning.exhausted_action == ExhaustedAction.UNPAID:
            s.status = S.UNPAID
            s.dunning.next_retry_at = None
            s.dunning.awaiting_payment_method = True
            await self._sync(
                [self._event("subscription.unpaid")],
                features=[],
                invoice_status={invoice_id: "uncollectible"} if invoice_id else None,
            )
            return
        await self._cancel_now(reason="dunning_exhausted", actor=None, uncollectible=invoice_id)

    async def _expire_incomplete(self) -> None:
        s = self._s
        s.status = S.INCOMPLETE_EXPIRED
        void = {s.open_invoice.id: "void"} if s.open_invoice else None
        s.open_invoice = None
        await self._sync(
            [self._event("subscription.incomplete_expired")], features=[], invoice_status=void
        )

    # ------------------------------------------------------------------ cancel, pause

    async def _cancel_now(
        self,
        reason: str,
        actor: str | None,
        *,
        void: str | None = None,
        uncollectible: str | None = None,
        refund: str = "none",
        settle: bool = False,
        detail: str | None = None,
    ) -> None:
        """End the subscription now. With `settle` (a requested or scheduled cancel), lines
        still waiting for the next invoice are settled: a net debit is invoiced, and with
        `refund="prorated"` the unused time plus any waiting credit is refunded."""
        s = self._s
        now = self._now()
        events: list[EventDraft] = []
        statuses: dict[str, str] = {}
        if void:
            statuses[void] = "void"
        if uncollectible:
            statuses[uncollectible] = "uncollectible"
        if settle:
            events += await self._settle_on_cancel(refund, actor, statuses)
        s.status = S.CANCELED
        s.canceled_at = now
        s.cancel_reason = reason
        s.cancel_at_period_end = False
        s.pending_change, s.pending_plan = None, None
        s.pending_proration_lines = []
        s.dunning.next_retry_at = None
        s.open_invoice = None
        extra = {"detail": detail} if detail else {}
        events.append(self._event("subscription.canceled", reason=reason, actor=actor, **extra))
        await self._sync(events, features=[], invoice_status=statuses or None)

    async def _cancel_as_requested_in_temporal(self) -> None:
        """An immediate cancel on behalf of whoever asked Temporal to cancel the workflow
        (actor `temporal`, their reason in the event), refunding as the policy says."""
        async with self._lock:
            if self.status in TERMINAL:
                return
            s = self._s
            await self._cancel_now(
                reason="temporal_cancel_request",
                actor="temporal",
                void=s.open_invoice.id if s.open_invoice else None,
                refund=self._in.policy.temporal_cancel_refund,
                settle=True,
                detail=workflow.cancellation_reason() or None,
            )

    async def _settle_on_cancel(
        self, refund: str, actor: str | None, statuses: dict[str, str]
    ) -> list[EventDraft]:
        s = self._s
        now = self._now()
        lines = list(s.pending_proration_lines)
        s.pending_proration_lines = []
        if (
            refund == "prorated"
            and s.status == S.ACTIVE
            and s.current_period_start is not None
            and s.current_period_end is not None
        ):
            credit = unused_time_credit(s.plan, s.current_period_start, s.current_period_end, now)
            if credit is not None:
                lines.append(credit)
        total = sum(line.amount for line in lines)
        if total < 0 and refund == "prorated":
            return await self._refund(lines, actor)
        if total <= 0:
            return []
        # Prorations owed (e.g. an upgrade with create_prorations): a final invoice.
        invoice = self._invoice("subscription_cancel", lines, now, now)
        outcome = await self._charge(invoice, 1, actor=actor)
        if outcome.status == "paid":
            return self._paid_events(invoice, outcome, actor=actor)
        statuses[invoice.id] = "uncollectible"
        return [self._failed_event(invoice, outcome, actor=actor)]

    async def _refund(self, lines: list[InvoiceLine], actor: str | None) -> list[EventDraft]:
        """A credit note for `lines` (a net credit), refunded over the period's payments."""
        s = self._s
        start = min(line.period_start for line in lines)
        end = max(line.period_end for line in lines)
        note = self._invoice("subscription_cancel_refund", lines, start, end)
        payments = [(p.invoice_id, p.amount) for p in s.period_payments]
        # Nothing paid in cash this period: the activity records the note, refunds nothing.
        parts = allocate_refund(-note.total, payments) or [(note.id, 0)]
        refunded = 0
        for invoice_id, amount in parts:
            result: RefundOutcome = await workflow.execute_activity(
                "refund_invoice",
                RefundRequest(
                    invoice_id=invoice_id,
                    subscription_id=s_id(self),
                    amount=amount,
                    refund_key=f"{s_id(self)}:{note.id}:{invoice_id}:refund",
                    credit_note=note,
                ),
                result_type=RefundOutcome,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=CHARGE_RETRY,
                summary=f"refund {amount} {s.plan.currency} of {invoice_id}",
            )
            refunded += result.refunded
        s.refunded += refunded
        return [
            self._event(
                "invoice.refunded",
                invoice_id=parts[0][0],
                refunded_invoices=[invoice_id for invoice_id, _ in parts],
                credit_note_id=note.id,
                credit=-note.total,
                amount=refunded,
                actor=actor,
            )
        ]

    async def _resume(self, actor: str | None) -> None:
        """A new period starts now and is charged; a change scheduled while paused applies."""
        s = self._s
        now = self._now()
        s.pause = None
        events = [self._event("subscription.resumed", actor=actor)]
        events += self._apply_pending_plan(now, when="resume")
        s.billing_cycle_anchor = now
        start, end = period_after(s.plan, now, now)
        invoice = self._next_invoice("subscription_resume", start, end)
        self._start_period(start, end)
        outcome = await self._charge(invoice, 1, actor=actor)
        if outcome.status == "paid":
            s.status = S.ACTIVE
            self._record_paid(invoice, outcome)
            await self._sync(
                [*events, *self._paid_events(invoice, outcome)], features=s.plan.features
            )
            return
        await self._enter_dunning(invoice, outcome, extra=events)

    # ------------------------------------------------------------------ updates

    @workflow.update
    async def initial_state(self) -> SubscriptionView:
        """Sent with the start (update-with-start): answers once the first charge or trial
        is decided."""
        await workflow.wait_condition(lambda: self._started)
        return self._view()

    @workflow.update
    async def change_plan(self, req: ChangePlanRequest) -> ChangePlanResult:
        """Upgrade, downgrade or switch interval; `preview` computes and changes nothing."""
        self._update_not_durable = True
        async with self._lock:
            s = self._s
            if self._drops_pending_change(req):
                if req.preview:
                    return self._change_result(req, preview=self._upcoming_renewal(s.plan))
                return await self._drop_pending_change(req)
            if s.status == S.TRIALING:
                self._check_trial_change(req)
                return await self._change_during_trial(req)
            quote = self._quote(req)
            if req.preview:
                return self._change_result(req, quote, preview=self._quote_preview(quote, req))
            if quote.billing == Billing.AT_PERIOD_END:
                return await self._schedule_change(req, quote)
            return await self._change_now(req, quote)

    @change_plan.validator
    def _validate_change_plan(self, req: ChangePlanRequest) -> None:
        if self._drops_pending_change(req):
            return  # asking for the current plan cancels the scheduled change
        if self.status == S.TRIALING:
            self._check_trial_change(req)
            return
        self._quote(req)

    def _drops_pending_change(self, req: ChangePlanRequest) -> bool:
        return req.plan.plan_id == self._s.plan.plan_id and self._s.pending_plan is not None

    def _check_trial_change(self, req: ChangePlanRequest) -> None:
        try:
            check_trial_change(
                self._s.plan,
                req.plan,
                self._s.changes_this_period,
                self._in.policy.plan_change.max_changes_per_period,
            )
        except DomainError as err:
            raise rejected(err) from None

    def _quote(self, req: ChangePlanRequest) -> ChangeQuote:
        """Decide and price the change, or reject it (validator and handler alike)."""
        s = self._s
        try:
            decision = decide(
                s.plan,
                req.plan,
                s.status,
                s.changes_this_period,
                req.when,
                req.proration,
                self._in.policy.plan_change,
            )
        except DomainError as err:
            raise rejected(err) from None
        now = self._now()
        start, end = s.current_period_start, s.current_period_end
        if start is None or end is None or not start <= now < end:
            raise rejected(errors.PERIOD_RENEWING("The billing period is renewing; try again"))
        return quote_change(
            s.plan,
            req.plan,
            decision,
            period_start=start,
            period_end=end,
            anchor=s.billing_cycle_anchor,
            now=now,
        )

    def _quote_preview(self, quote: ChangeQuote, req: ChangePlanRequest) -> InvoiceDraft:
        s = self._s
        assert s.current_period_end is not None
        return self._draft(
            preview_invoice(
                quote,
                s.plan,
                req.plan,
                s.billing_cycle_anchor,
                s.current_period_end,
                s.pending_proration_lines,
            )
        )

    def _upcoming_renewal(self, plan: PlanSnapshot) -> InvoiceDraft:
        s = self._s
        assert s.current_period_end is not None
        return self._draft(
            upcoming_renewal(
                s.plan,
                plan,
                s.billing_cycle_anchor,
                s.current_period_end,
                s.pending_proration_lines,
            )
        )

    def _draft(self, content: InvoicePlan) -> InvoiceDraft:
        """A previewed invoice: built like a real one, never stored or charged."""
        return self._build_invoice(content.reason, content.lines, content.start, content.end)[0]

    def _change_result(
        self,
        req: ChangePlanRequest,
        quote: ChangeQuote | None = None,
        *,
        invoice: InvoiceDraft | None = None,
        preview: InvoiceDraft | None = None,
    ) -> ChangePlanResult:
        return ChangePlanResult(
            subscription=self._view(),
            decision=decision_summary(quote.decision) if quote else None,
            invoice=invoice,
            invoice_preview=preview,
            preview=req.preview,
        )

    async def _drop_pending_change(self, req: ChangePlanRequest) -> ChangePlanResult:
        s = self._s
        dropped = s.pending_change.plan_id if s.pending_change else None
        s.pending_plan, s.pending_change = None, None
        self._dirty = True
        await self._sync(
            [self._event("subscription.plan_change_canceled", plan_id=dropped, actor=req.actor)]
        )
        return self._change_result(req)

    async def _change_during_trial(self, req: ChangePlanRequest) -> ChangePlanResult:
        """Nothing was charged yet: swap the plan; the trial-end invoice is at the new price."""
        s = self._s
        assert s.trial_end is not None
        anchor = anchor_after_change(s.plan, req.plan, s.billing_cycle_anchor, s.trial_end)
        if req.preview:
            line, end = opening_line(req.plan, anchor, s.trial_end)
            preview = self._build_invoice("subscription_cycle", [line], s.trial_end, end)[0]
            return self._change_result(req, preview=preview)
        old = s.plan
        s.plan = req.plan
        s.billing_cycle_anchor = anchor
        s.changes_this_period += 1
        self._dirty = True
        await self._sync(
            [
                self._event(
                    "subscription.plan_changed",
                    from_plan=old.plan_id,
                    to_plan=req.plan.plan_id,
                    when="now",
                    during_trial=True,
                    actor=req.actor,
                )
            ],
            features=req.plan.features,
        )
        return self._change_result(req)

    async def _schedule_change(
        self, req: ChangePlanRequest, quote: ChangeQuote
    ) -> ChangePlanResult:
        """A downgrade (by default) waits for the period end; a new request replaces it."""
        s = self._s
        replaced = s.pending_change.plan_id if s.pending_change else None
        s.pending_plan = req.plan
        s.pending_change = PendingChangeView(
            plan_id=req.plan.plan_id, effective_at=quote.effective_at, proration="none"
        )
        s.changes_this_period += 1
        self._dirty = True
        await self._sync(
            [
                self._event(
                    "subscription.plan_change_scheduled",
                    from_plan=s.plan.plan_id,
                    to_plan=req.plan.plan_id,
                    effective_at=quote.effective_at,
                    kind=quote.decision.kind.value,
                    replaces=replaced,
                    actor=req.actor,
                )
            ]
        )
        return self._change_result(req, quote)

    async def _change_now(self, req: ChangePlanRequest, quote: ChangeQuote) -> ChangePlanResult:
        s = self._s
        old = s.plan
        events: list[EventDraft] = []
        invoice: InvoiceDraft | None = None
        outcome: ChargeOutcome | None = None
        if quote.billing == Billing.INVOICE_NOW and quote.lines:
            invoice, carried = self._build_invoice(
                "subscription_update", quote.lines, quote.invoice_start, quote.invoice_end
            )
            latest = s.latest_invoice_id
            outcome = await self._charge(invoice, 1, actor=req.actor)
            if outcome.status != "paid":
                s.latest_invoice_id = latest
                await self._sync(
                    [self._failed_event(invoice, outcome, actor=req.actor)],
                    invoice_status={invoice.id: "void"},
                )
                raise rejected(
                    errors.PAYMENT_FAILED(
                        f"The change was not applied: the charge of {invoice.total} was declined "
                        f"({outcome.decline_code or outcome.failure_code})"
                    )
                )
            events += self._paid_events(invoice, outcome, actor=req.actor)
            if carried is not None:
                s.pending_proration_lines.append(carried)
        elif quote.billing == Billing.NEXT_INVOICE:
            s.pending_proration_lines += quote.lines
        replaced = s.pending_change.plan_id if s.pending_change else None
        s.plan = req.plan
        s.pending_plan, s.pending_change = None, None
        if quote.decision.new_anchor:
            s.billing_cycle_anchor = quote.anchor
            self._start_period(quote.period_start, quote.period_end)
        else:
            s.changes_this_period += 1
        if invoice is not None and outcome is not None:
            self._record_paid(invoice, outcome)
        self._dirty = True
        events.append(
            self._event(
                "subscription.plan_changed",
                from_plan=old.plan_id,
                to_plan=req.plan.plan_id,
                when="now",
                kind=quote.decision.kind.value,
                proration=quote.decision.proration.value,
                invoice_id=invoice.id if invoice else None,
                deferred_lines=len(quote.lines) if quote.billing == Billing.NEXT_INVOICE else 0,
                replaces=replaced,
                actor=req.actor,
            )
        )
        await self._sync(events, features=req.plan.features)
        return self._change_result(req, quote, invoice=invoice)

    @workflow.update
    async def cancel(self, req: CancelRequest) -> SubscriptionView:
        self._update_not_durable = True
        async with self._lock:
            s = self._s
            if req.at_period_end and s.status in (S.ACTIVE, S.TRIALING):
                if s.cancel_at_period_end:
                    return self._view()  # already scheduled
                # A trial canceled at period end ends with the trial, uncharged.
                s.cancel_at_period_end = True
                self._dirty = True
                await self._sync(
                    [
                        self._event(
                            "subscription.cancel_scheduled",
                            at=s.current_period_end,
                            actor=req.actor,
                        )
                    ]
                )
                return self._view()
            void = s.open_invoice.id if s.open_invoice else None
            await self._cancel_now(
                reason="requested", actor=req.actor, void=void, refund=req.refund, settle=True
            )
            self._dirty = True
            return self._view()

    @cancel.validator
    def _validate_cancel(self, req: CancelRequest) -> None:
        if self.status in TERMINAL:
            raise rejected(errors.SUBSCRIPTION_CANCELED(f"Subscription is already {self.status}"))
        if req.refund not in ("none", "prorated"):
            raise rejected(errors.INVALID_REFUND("refund must be none or prorated"))
        if req.refund == "prorated" and req.at_period_end:
            raise rejected(
                errors.INVALID_REFUND("A prorated refund applies only to an immediate cancel")
            )

    @workflow.update
    async def reactivate(self, req: ActorRequest) -> SubscriptionView:
        async with self._lock:
            self._s.cancel_at_period_end = False
            self._dirty = True
            await self._sync([self._event("subscription.reactivated", actor=req.actor)])
            return self._view()

    @reactivate.validator
    def _validate_reactivate(self, req: ActorRequest) -> None:
        if not self._s.cancel_at_period_end:
            raise rejected(
                errors.NOT_PENDING_CANCEL("Subscription has no pending cancellation to undo")
            )

    @workflow.update
    async def pause(self, req: PauseRequest) -> SubscriptionView:
        async with self._lock:
            s = self._s
            now = self._now()
            assert s.current_period_start is not None and s.current_period_end is not None
            # Access stops now, so the paid time left in the period is credited to the
            # invoice that resumes the subscription.
            credit = unused_time_credit(s.plan, s.current_period_start, s.current_period_end, now)
            if credit is not None:
                s.pending_proration_lines.append(credit)
            s.status = S.PAUSED
            s.pause = PauseView(paused_at=now, resumes_at=req.resumes_at)
            self._dirty = True
            await self._sync(
                [
                    self._event(
                        "subscription.paused",
                        resumes_at=req.resumes_at,
                        credit=credit.amount if credit else 0,
                        actor=req.actor,
                    )
                ],
                features=[],
            )
            return self._view()

    @pause.validator
    def _validate_pause(self, req: PauseRequest) -> None:
        if self.status != S.ACTIVE:
            raise rejected(
                errors.SUBSCRIPTION_NOT_PAUSABLE(
                    f"Only an active subscription can be paused (it is {self.status})"
                )
            )
        if self._s.cancel_at_period_end:
            raise rejected(
                errors.SUBSCRIPTION_CANCEL_PENDING(
                    "The subscription cancels at period end; reactivate it before pausing"
                )
            )
        if req.resumes_at is not None and req.resumes_at <= self._now():
            raise rejected(errors.INVALID_RESUMES_AT("resumes_at must be in the future"))
        if req.resumes_at is not None and req.resumes_at > self._now() + MAX_PAUSE:
            raise rejected(
                errors.INVALID_RESUMES_AT(f"A pause may last at most {MAX_PAUSE.days} days")
            )

    @workflow.update
    async def resume(self, req: ActorRequest) -> SubscriptionView:
        self._update_not_durable = True
        async with self._lock:
            await self._resume(actor=req.actor)
            self._dirty = True
            return self._view()

    @resume.validator
    def _validate_resume(self, req: ActorRequest) -> None:
        if self.status != S.PAUSED:
            raise rejected(
                errors.SUBSCRIPTION_NOT_PAUSED(f"Subscription is {self.status}, not paused")
            )

    @workflow.update
    async def extend_trial(self, req: ExtendTrialRequest) -> SubscriptionView:
        async with self._lock:
            s = self._s
            old = s.trial_end
            if s.billing_cycle_anchor == old:
                s.billing_cycle_anchor = req.trial_end  # the default anchor follows the trial
            s.trial_end = s.current_period_end = req.trial_end
            warn_at = req.trial_end - timedelta(days=self._in.policy.trial_will_end_days)
            if warn_at > self._now():
                s.trial_will_end_sent = False
            self._dirty = True
            await self._sync(
                [
                    self._event(
                        "subscription.trial_extended",
                        from_trial_end=old,
                        trial_end=req.trial_end,
                        actor=req.actor,
                    )
                ],
                features=s.plan.features,
            )
            return self._view()

    @extend_trial.validator
    def _validate_extend_trial(self, req: ExtendTrialRequest) -> None:
        s = self._s
        if s.status != S.TRIALING:
            raise rejected(
                errors.SUBSCRIPTION_NOT_TRIALING(f"Subscription is {s.status}, not trialing")
            )
        if req.trial_end.tzinfo is None or s.trial_end is None or req.trial_end <= s.trial_end:
            raise rejected(
                errors.INVALID_TRIAL_END("trial_end must be a UTC time after the current trial end")
            )
        if req.trial_end > self._now() + MAX_TRIAL:
            raise rejected(
                errors.INVALID_TRIAL_END(f"A trial may last at most {MAX_TRIAL.days} days from now")
            )

    @workflow.update
    async def retry_payment(self, req: ActorRequest) -> ChargeOutcome:
        self._update_not_durable = True
        async with self._lock:
            outcome = await self._retry_open_invoice(actor=req.actor)
            self._dirty = True
            return outcome

    @retry_payment.validator
    def _validate_retry_payment(self, req: ActorRequest) -> None:
        if self.status not in (S.PAST_DUE, S.INCOMPLETE, S.UNPAID) or self._s.open_invoice is None:
            raise rejected(
                errors.NOTHING_TO_RETRY(f"Subscription is {self.status} with no open invoice")
            )

    @workflow.update
    async def advance_clock(self, req: AdvanceClock) -> AdvanceResult:
        """Test clocks: answer once everything due up to the clock's new time is done."""
        self._update_not_durable = True  # the loop may renew (charge) at once
        epoch = self._clock.advance(req.to)
        wait_for_projection = self._patches.use(ADVANCE_WAITS_FOR_FINAL_PROJECTION)
        await workflow.wait_condition(
            lambda: (
                self._clock.caught_up(epoch)
                or self._continuing
                or (self._finished if wait_for_projection else self.status in TERMINAL)
            )
        )
        caught_up = not self._continuing or self._clock.caught_up(epoch)
        return AdvanceResult(caught_up=caught_up, now=self._now(), status=self.status)

    @advance_clock.validator
    def _validate_advance_clock(self, req: AdvanceClock) -> None:
        if not self._clock.is_test_clock:
            raise rejected(
                errors.NOT_ON_TEST_CLOCK("This subscription does not run on a test clock")
            )

    # ------------------------------------------------------------------ signals, queries

    @workflow.signal
    def payment_method_changed(self, msg: PaymentMethodChanged) -> None:
        """A new card: dunning and incomplete subscriptions try again at once."""
        d = self._s.dunning
        if self.status in (S.PAST_DUE, S.UNPAID, S.INCOMPLETE) and self._s.open_invoice:
            d.awaiting_payment_method = False
            d.next_retry_at = self._now()
            self._dirty = True

    @workflow.signal
    def payment_succeeded(self, msg: PaymentSucceeded) -> None:
        """Stripe reported an asynchronous success (e.g. after 3-D Secure)."""
        if self._s.open_invoice and self._s.open_invoice.id == msg.invoice_id:
            self._s.dunning.next_retry_at = self._now()
            self._s.dunning.awaiting_payment_method = False
            self._dirty = True

    @workflow.query
    def state(self) -> SubscriptionView:
        return self._view()

    # ------------------------------------------------------------------ helpers

    @property
    def status(self) -> S:
        return S(self._s.status)

    def _now(self) -> datetime:
        return self._clock.now()

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{workflow.uuid4().hex[:24]}"

    def _event(self, type_: str, actor: str | None = None, **data: object) -> EventDraft:
        return event_draft(self._in, self._new_id("evt"), type_, self._now(), actor, **data)

    def _invoice(
        self, reason: str, lines: list[InvoiceLine], start: datetime, end: datetime
    ) -> InvoiceDraft:
        return InvoiceDraft(
            id=self._new_id("in"),
            subscription_id=self._in.subscription_id,
            customer_id=self._in.customer_id,
            currency=self._s.plan.currency,
            billing_reason=reason,
            lines=lines,
            period_start=start,
            period_end=end,
            created_at=self._now(),
        )

    def _build_invoice(
        self, reason: str, lines: list[InvoiceLine], start: datetime, end: datetime
    ) -> tuple[InvoiceDraft, InvoiceLine | None]:
        """An invoice never below zero: a net credit becomes a line carried to the next one."""
        lines, carried = carry_credit(lines, self._now())
        return self._invoice(reason, lines, start, end), carried

    def _next_invoice(self, reason: str, start: datetime, end: datetime) -> InvoiceDraft:
        """The invoice opening a new period: waiting lines, then the period at the plan's price."""
        s = self._s
        lines = [*s.pending_proration_lines, period_line(s.plan, start, end)]
        invoice, carried = self._build_invoice(reason, lines, start, end)
        s.pending_proration_lines = [carried] if carried else []
        return invoice

    def _start_period(self, start: datetime, end: datetime) -> None:
        s = self._s
        s.current_period_start, s.current_period_end = start, end
        s.changes_this_period = 0
        s.period_payments = []

    def _record_paid(
        self, invoice: InvoiceDraft, outcome: ChargeOutcome, state: CarriedState | None = None
    ) -> None:
        """Remember cash collected for this period (what a prorated refund can return), in
        the state (or in `state`, the copy a projected charge decides on)."""
        if outcome.status == "paid" and outcome.amount > 0:
            (state or self._s).period_payments.append(
                PeriodPayment(invoice_id=invoice.id, amount=outcome.amount)
            )

    def _apply_pending_plan(self, at: datetime, when: str) -> list[EventDraft]:
        """Switch to the scheduled plan; a new period length restarts periods at `at`."""
        s = self._s
        if s.pending_plan is None:
            return []
        old = s.plan
        s.billing_cycle_anchor = anchor_after_change(
            old, s.pending_plan, s.billing_cycle_anchor, at
        )
        s.plan, s.pending_plan, s.pending_change = s.pending_plan, None, None
        return [
            self._event(
                "subscription.plan_changed",
                from_plan=old.plan_id,
                to_plan=s.plan.plan_id,
                when=when,
            )
        ]

    async def _charge(
        self,
        invoice: InvoiceDraft,
        attempt: int,
        actor: str | None = None,
        on_paid: SyncRequest | None = None,
    ) -> ChargeOutcome:
        await self._make_updates_durable()
        start = (
            workflow.start_local_activity
            if self._patches.use(LEAN_RENEWALS)
            else workflow.start_activity
        )
        outcome: ChargeOutcome = await self._to_the_end(
            start(
                "charge_invoice",
                ChargeRequest(
                    invoice=invoice,
                    attempt_number=attempt,
                    actor=actor,
                    on_paid=on_paid,
                    clock_time=self._now() if self._clock.is_test_clock else None,
                ),
                result_type=ChargeOutcome,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(hours=6),
                retry_policy=CHARGE_RETRY,
                summary=(
                    f"charge {invoice.id} attempt {attempt}: {invoice.total} {invoice.currency}"
                ),
            )
        )
        self._s.latest_invoice_id = invoice.id
        self._last_outcome = outcome
        return outcome

    async def _make_updates_durable(self) -> None:
        """Before money moves because of an update, let that update reach history.

        The charge is a local activity: it runs inside the workflow task, and an update
        delivered in that task is written to history (accepted) only when the task
        completes. A worker that died between Stripe's answer and the task's completion
        lost the update and the reason for the charge with it. A short timer completes the
        task first; from then on the update is durable, and a crash after the charge
        replays it and charges again with the same idempotency key: charged once, applied
        once. Timer-driven steps (renewals on real time, dunning retries) need none: their
        timer is already in history."""
        if not self._update_not_durable:
            return
        self._update_not_durable = False
        if self._patches.use(DURABLE_UPDATE_CHARGES):
            await workflow.sleep(timedelta(milliseconds=1))

    def _activated(self, paid: CarriedState) -> list[EventDraft]:
        """The paid case of a first payment (after a trial or at creation): active."""
        paid.status = S.ACTIVE
        return [self._event("subscription.activated")]

    def _paid_events(
        self, invoice: InvoiceDraft, outcome: ChargeOutcome, actor: str | None = None
    ) -> list[EventDraft]:
        return [
            self._event(
                "invoice.paid",
                invoice_id=invoice.id,
                amount=outcome.amount,
                attempt=outcome.attempt_number,
                actor=actor,
            )
        ]

    def _failed_event(
        self, invoice: InvoiceDraft, outcome: ChargeOutcome, actor: str | None = None
    ) -> EventDraft:
        self._s.last_decline = outcome.decline_code or outcome.failure_code
        return self._event(
            "invoice.payment_failed",
            invoice_id=invoice.id,
            attempt=outcome.attempt_number,
            decline_code=outcome.decline_code,
            failure_code=outcome.failure_code,
            actor=actor,
        )

    async def _sync(
        self,
        events: list[EventDraft],
        *,
        features: list[str] | None = None,
        invoice_status: dict[str, str] | None = None,
    ) -> None:
        """Project state to PostgreSQL (read model, timeline, entitlements) and to Temporal."""
        request = sync_request(
            self._in,
            self._s,
            events,
            self._now(),
            self._new_id,
            features=features,
            invoice_status=invoice_status,
        )
        await self._project(request)

    async def _project(self, request: SyncRequest) -> None:
        start = (
            workflow.start_local_activity
            if self._patches.use(LEAN_RENEWALS)
            else workflow.start_activity
        )
        await self._to_the_end(
            start(
                "sync_subscription",
                request,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=SYNC_RETRY,
                summary=", ".join(e.type for e in request.events) or "state",
            )
        )
        self._publish()

    async def _to_the_end(self, activity: Awaitable[T]) -> T:
        """Await an activity that moves money or writes records; a cancel requested through
        Temporal meanwhile lets it finish (a charge cut short could leave money taken and
        nothing recorded) and is acted on as the next step."""
        if not self._patches.use(CANCEL_REQUEST_CANCELS):
            return await activity
        try:
            return await asyncio.shield(activity)
        except asyncio.CancelledError:
            self._cancel_requested = True
            return await activity

    def _publish(self) -> None:
        """Search attributes and current details, for operators in the Temporal UI."""
        updates = search_attribute_updates(self._s)
        if self._patches.use(SEARCH_ATTRIBUTES_ON_CHANGE):
            updates = changed_only(updates, workflow.info().typed_search_attributes)
        if updates:
            workflow.upsert_search_attributes(updates)
        workflow.set_current_details(current_details(self._in, self._s, self._now()))

    def _view(self) -> SubscriptionView:
        return subscription_view(self._in, self._s)

    def _run_is_full(self, renewed: bool) -> bool:
        """Time to continue as new: after PERIODS_PER_RUN renewals, or a long history."""
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        if not self._patches.use(LEAN_RENEWALS):
            return renewed  # the recorded behaviour: a run per period
        if renewed:
            self._renewals_in_run += 1
        return (
            self._renewals_in_run >= PERIODS_PER_RUN
            or info.get_current_history_length() >= HISTORY_PER_RUN
        )

    async def _continue_as_new(self) -> None:
        """Hand state to a fresh run once in-flight handlers are done."""
        self._continuing = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._s.clock_now = self._clock.test_now
        self._s.clock_cursor = self._clock.cursor
        workflow.continue_as_new(self._in.model_copy(update={"carried": self._s}))


def s_id(wf: SubscriptionWorkflow) -> str:
    return wf._in.subscription_id
