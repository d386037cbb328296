"""SubscriptionWorkflow: one durable workflow owns one subscription's whole life.

Read top to bottom it is the lifecycle: start (trial or first charge), then a loop that
waits for the next thing due — trial ending, period end, a dunning retry, expiry of an
incomplete first payment, the end of a pause — and does it. Updates (change plan,
cancel, pause, ...) validate first, so a rejected request leaves no trace, then change
state under the same lock the loop uses. Each renewal continues as new so history
stays bounded.

Side effects happen only in activities, called by name so this module never imports
the Stripe or database code.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from domain.contracts import (
    ChargeOutcome,
    ChargeRequest,
    DunningView,
    EntitlementGrant,
    EventDraft,
    InvoiceDraft,
    PauseView,
    PendingChangeView,
    RefundOutcome,
    RefundRequest,
    SubscriptionView,
    SyncRequest,
)
from domain.dunning import ExhaustedAction, next_retry_at
from domain.errors import DomainError
from domain.invoices import InvoiceLine, proration_lines
from domain.periods import next_boundary_after
from domain.plan_change import (
    ChangeKind,
    ChangeWhen,
    ProrationBehavior,
    decide_plan_change,
)
from domain.status import SubscriptionStatus as S
from workflows.clock import WorkflowClock
from workflows.details import current_details, search_attribute_updates
from workflows.errors import from_domain, rejected
from workflows.invoicing import partial_period_line, period_line, unused_time_credit
from workflows.messages import (
    ActorRequest,
    AdvanceClock,
    AdvanceResult,
    CancelRequest,
    CarriedState,
    ChangePlanRequest,
    ExtendTrialRequest,
    PauseRequest,
    PaymentMethodChanged,
    PaymentSucceeded,
    SubscriptionInput,
)

TERMINAL = frozenset({S.CANCELED, S.INCOMPLETE_EXPIRED})

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
        self._s: CarriedState = carried or self._initial_state(inp)
        self._started = carried is not None
        self._dirty = False
        self._continuing = False
        self._finished = False
        self._lock = asyncio.Lock()
        self._last_outcome: ChargeOutcome | None = None

    # ------------------------------------------------------------------ lifecycle

    @workflow.run
    async def run(self, inp: SubscriptionInput) -> SubscriptionView:
        if not self._started:
            async with self._lock:
                await self._begin()
            self._started = True
        while self.status not in TERMINAL:
            step, due = self._next_step()
            woken = await self._clock.wait(due, lambda: self._dirty)
            if woken:
                self._dirty = False
                continue  # something changed: recompute what is due next
            async with self._lock:
                if self._next_step() != (step, due):
                    continue  # a handler moved things while we queued for the lock
                renewed = await self._perform(step)
            if renewed or workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new()
        self._finished = True  # only now is the final state projected
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._view()

    async def _begin(self) -> None:
        """Trial, or the first charge; decides the state the creating API call returns."""
        s = self._s
        now = self._now()
        created = self._event("subscription.created", plan_id=s.plan.plan_id)
        if s.status == S.TRIALING:
            await self._sync(
                [created, self._event("subscription.trial_started", trial_end=s.trial_end)],
                features=s.plan.features,
            )
            return
        start = now
        end = next_boundary_after(
            s.billing_cycle_anchor, s.plan.interval, s.plan.interval_count, now
        )
        if s.billing_cycle_anchor > now:
            line = partial_period_line(s.plan, s.billing_cycle_anchor, start, end)
        else:
            line = period_line(s.plan, start, end)
        invoice = self._invoice("subscription_create", [line], start, end)
        outcome = await self._charge(invoice, 1)
        if outcome.status == "paid":
            s.status = S.ACTIVE
            s.current_period_start, s.current_period_end = start, end
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
            s.current_period_start, s.current_period_end = start, end
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
        start = s.trial_end
        end = next_boundary_after(
            s.billing_cycle_anchor, s.plan.interval, s.plan.interval_count, start
        )
        invoice = self._invoice("subscription_cycle", [period_line(s.plan, start, end)], start, end)
        s.current_period_start, s.current_period_end = start, end
        s.trial_end = start
        outcome = await self._charge(invoice, 1)
        if outcome.status == "paid":
            s.status = S.ACTIVE
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
            await self._cancel_now(reason="cancel_at_period_end", actor=None)
            return False
        events: list[EventDraft] = []
        if s.pending_plan is not None:
            old = s.plan
            s.plan, s.pending_plan, s.pending_change = s.pending_plan, None, None
            events.append(
                self._event(
                    "subscription.plan_changed",
                    from_plan=old.plan_id,
                    to_plan=s.plan.plan_id,
                    when="period_end",
                )
            )
        start = s.current_period_end
        end = next_boundary_after(
            s.billing_cycle_anchor, s.plan.interval, s.plan.interval_count, start
        )
        lines = [*self._take_pending_prorations(), period_line(s.plan, start, end)]
        invoice = self._invoice("subscription_cycle", lines, start, end)
        s.current_period_start, s.current_period_end = start, end
        s.changes_this_period = 0
        outcome = await self._charge(invoice, 1)
        if outcome.status == "paid":
            s.renewals += 1
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
    ) -> None:
        s = self._s
        now = self._now()
        events: list[EventDraft] = []
        statuses: dict[str, str] = {}
        if void:
            statuses[void] = "void"
        if uncollectible:
            statuses[uncollectible] = "uncollectible"
        if (
            refund == "prorated"
            and s.status == S.ACTIVE
            and s.current_period_start
            and s.current_period_end
            and s.latest_invoice_id
        ):
            credit = unused_time_credit(s.plan, s.current_period_start, s.current_period_end, now)
            if credit is not None:
                events += await self._refund(credit, actor)
        s.status = S.CANCELED
        s.canceled_at = now
        s.cancel_at_period_end = False
        s.pending_change, s.pending_plan = None, None
        s.dunning.next_retry_at = None
        s.open_invoice = None
        events.append(self._event("subscription.canceled", reason=reason, actor=actor))
        await self._sync(events, features=[], invoice_status=statuses or None)

    async def _refund(self, credit: InvoiceLine, actor: str | None) -> list[EventDraft]:
        s = self._s
        paid_invoice = s.latest_invoice_id
        assert paid_invoice is not None
        note = self._invoice(
            "subscription_cancel_refund", [credit], credit.period_start, credit.period_end
        )
        result: RefundOutcome = await workflow.execute_activity(
            "refund_invoice",
            RefundRequest(
                invoice_id=paid_invoice,
                subscription_id=s_id(self),
                amount=-credit.amount,
                refund_key=f"{s_id(self)}:{note.id}:refund",
                credit_note=note,
            ),
            result_type=RefundOutcome,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=CHARGE_RETRY,
            summary=f"refund {-credit.amount} {s.plan.currency} of {paid_invoice}",
        )
        return [
            self._event(
                "invoice.refunded",
                invoice_id=paid_invoice,
                credit_note_id=note.id,
                amount=result.refunded,
                actor=actor,
            )
        ]

    async def _resume(self, actor: str | None) -> None:
        s = self._s
        now = self._now()
        s.pause = None
        s.billing_cycle_anchor = now
        start = now
        end = next_boundary_after(now, s.plan.interval, s.plan.interval_count, now)
        s.current_period_start, s.current_period_end = start, end
        s.changes_this_period = 0
        invoice = self._invoice(
            "subscription_resume", [period_line(s.plan, start, end)], start, end
        )
        outcome = await self._charge(invoice, 1, actor=actor)
        resumed = self._event("subscription.resumed", actor=actor)
        if outcome.status == "paid":
            s.status = S.ACTIVE
            await self._sync(
                [resumed, *self._paid_events(invoice, outcome)], features=s.plan.features
            )
            return
        await self._enter_dunning(invoice, outcome, extra=[resumed])

    # ------------------------------------------------------------------ updates

    @workflow.update
    async def initial_state(self) -> SubscriptionView:
        """Sent with the start (update-with-start): answers once the first charge or trial
        is decided."""
        await workflow.wait_condition(lambda: self._started)
        return self._view()

    @workflow.update
    async def change_plan(self, req: ChangePlanRequest) -> dict[str, object]:
        async with self._lock:
            s = self._s
            if req.plan.plan_id == s.plan.plan_id and s.pending_plan is not None:
                return await self._drop_pending_change(req.actor)
            if s.status == S.TRIALING:
                return await self._change_during_trial(req)
            decision = decide_plan_change(
                s.plan,
                req.plan,
                s.status,
                s.changes_this_period,
                req.when,
                req.proration,
                self._in.policy.plan_change,
            )
            now = self._now()
            if decision.when == ChangeWhen.PERIOD_END:
                assert s.current_period_end is not None
                preview = self._invoice(
                    "subscription_cycle",
                    [
                        period_line(
                            req.plan,
                            s.current_period_end,
                            next_boundary_after(
                                s.billing_cycle_anchor,
                                req.plan.interval,
                                req.plan.interval_count,
                                s.current_period_end,
                            ),
                        )
                    ],
                    s.current_period_end,
                    s.current_period_end,
                )
                if req.preview:
                    return {
                        "decision": _decision_dict(decision),
                        "invoice_preview": preview.model_dump(mode="json"),
                    }
                s.pending_plan = req.plan
                s.pending_change = PendingChangeView(
                    plan_id=req.plan.plan_id, effective_at=s.current_period_end, proration="none"
                )
                s.changes_this_period += 1
                self._dirty = True
                await self._sync(
                    [
                        self._event(
                            "subscription.plan_change_scheduled",
                            to_plan=req.plan.plan_id,
                            effective_at=s.current_period_end,
                            actor=req.actor,
                        )
                    ]
                )
                return {
                    "decision": _decision_dict(decision),
                    "subscription": self._view().model_dump(mode="json"),
                }
            return await self._change_now(
                req,
                decision.kind,
                decision.proration,
                decision.new_anchor,
                now,
                decision_dict=_decision_dict(decision),
            )

    @change_plan.validator
    def _validate_change_plan(self, req: ChangePlanRequest) -> None:
        s = self._s
        if req.plan.plan_id == s.plan.plan_id and s.pending_plan is not None:
            return  # asking for the current plan cancels the scheduled change
        if s.status == S.TRIALING:
            if req.plan.plan_id == s.plan.plan_id:
                raise rejected("same_plan", f"Subscription is already on plan {s.plan.plan_id}")
            if req.plan.currency != s.plan.currency:
                raise rejected(
                    "currency_mismatch", "Cannot change to a plan in another currency", 422
                )
            return
        try:
            decide_plan_change(
                s.plan,
                req.plan,
                s.status,
                s.changes_this_period,
                req.when,
                req.proration,
                self._in.policy.plan_change,
            )
        except DomainError as err:
            raise from_domain(err) from None

    async def _drop_pending_change(self, actor: str | None) -> dict[str, object]:
        s = self._s
        dropped = s.pending_change.plan_id if s.pending_change else None
        s.pending_plan, s.pending_change = None, None
        self._dirty = True
        await self._sync(
            [self._event("subscription.plan_change_canceled", plan_id=dropped, actor=actor)]
        )
        return {"subscription": self._view().model_dump(mode="json")}

    async def _change_during_trial(self, req: ChangePlanRequest) -> dict[str, object]:
        s = self._s
        if req.preview:
            return {"invoice_preview": None, "subscription": self._view().model_dump(mode="json")}
        old = s.plan
        s.plan = req.plan
        s.pending_plan, s.pending_change = None, None
        await self._sync(
            [
                self._event(
                    "subscription.plan_changed",
                    from_plan=old.plan_id,
                    to_plan=req.plan.plan_id,
                    when="now",
                    actor=req.actor,
                )
            ],
            features=req.plan.features,
        )
        return {"subscription": self._view().model_dump(mode="json")}

    async def _change_now(
        self,
        req: ChangePlanRequest,
        kind: ChangeKind,
        proration: ProrationBehavior,
        new_anchor: bool,
        now: datetime,
        decision_dict: dict[str, object],
    ) -> dict[str, object]:
        s = self._s
        assert s.current_period_start is not None and s.current_period_end is not None
        old = s.plan
        if new_anchor:
            # Interval change: credit the unused old period, start a full new one now.
            start, end = (
                now,
                next_boundary_after(now, req.plan.interval, req.plan.interval_count, now),
            )
            lines: list[InvoiceLine] = []
            if proration != ProrationBehavior.NONE:
                credit = unused_time_credit(old, s.current_period_start, s.current_period_end, now)
                if credit is not None:
                    lines.append(credit)
            lines.append(period_line(req.plan, start, end))
        else:
            start, end = s.current_period_start, s.current_period_end
            lines = (
                []
                if proration == ProrationBehavior.NONE
                else proration_lines(old, req.plan, start, end, now)
            )
        invoice = self._invoice("subscription_update", lines, start if new_anchor else now, end)
        charge_now = new_anchor or proration == ProrationBehavior.ALWAYS_INVOICE
        if req.preview:
            return {"decision": decision_dict, "invoice_preview": invoice.model_dump(mode="json")}
        events: list[EventDraft] = []
        result: dict[str, object] = {"decision": decision_dict}
        if charge_now and invoice.lines:
            if invoice.total > 0:
                outcome = await self._charge(invoice, 1, actor=req.actor)
                if outcome.status != "paid":
                    await self._sync(
                        [self._failed_event(invoice, outcome, actor=req.actor)],
                        invoice_status={invoice.id: "void"},
                    )
                    raise rejected(
                        "payment_failed",
                        "The change was not applied: the charge of "
                        f"{invoice.total} was declined "
                        f"({outcome.decline_code or outcome.failure_code})",
                        402 if False else 409,
                    )
                events += self._paid_events(invoice, outcome, actor=req.actor)
            else:
                # A net credit is carried to the next invoice rather than paid out.
                s.pending_proration_lines += [
                    line.model_dump(mode="json") for line in invoice.lines
                ]
            result["invoice"] = invoice.model_dump(mode="json")
        elif proration == ProrationBehavior.CREATE_PRORATIONS:
            s.pending_proration_lines += [line.model_dump(mode="json") for line in invoice.lines]
        s.plan = req.plan
        s.pending_plan, s.pending_change = None, None
        s.changes_this_period += 1
        if new_anchor:
            s.billing_cycle_anchor = start
            s.current_period_start, s.current_period_end = start, end
            s.changes_this_period = 0
        self._dirty = True
        events.append(
            self._event(
                "subscription.plan_changed",
                from_plan=old.plan_id,
                to_plan=req.plan.plan_id,
                when="now",
                kind=kind.value,
                actor=req.actor,
            )
        )
        await self._sync(events, features=req.plan.features)
        result["subscription"] = self._view().model_dump(mode="json")
        return result

    @workflow.update
    async def cancel(self, req: CancelRequest) -> SubscriptionView:
        async with self._lock:
            s = self._s
            if req.at_period_end and s.status in (S.ACTIVE, S.TRIALING):
                s.cancel_at_period_end = True
                if s.status == S.TRIALING:
                    # A trial canceled "at period end" ends with the trial, uncharged.
                    await self._cancel_now(reason="canceled_during_trial", actor=req.actor)
                    return self._view()
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
                reason="requested", actor=req.actor, void=void, refund=req.refund
            )
            self._dirty = True
            return self._view()

    @cancel.validator
    def _validate_cancel(self, req: CancelRequest) -> None:
        if self.status in TERMINAL:
            raise rejected("subscription_canceled", f"Subscription is already {self.status}")
        if req.refund not in ("none", "prorated"):
            raise rejected("invalid_refund", "refund must be none or prorated", 422)
        if req.refund == "prorated" and req.at_period_end:
            raise rejected(
                "invalid_refund", "A prorated refund applies only to an immediate cancel", 422
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
            raise rejected("not_pending_cancel", "Subscription has no pending cancellation to undo")

    @workflow.update
    async def pause(self, req: PauseRequest) -> SubscriptionView:
        async with self._lock:
            s = self._s
            s.status = S.PAUSED
            s.pause = PauseView(paused_at=self._now(), resumes_at=req.resumes_at)
            self._dirty = True
            await self._sync(
                [self._event("subscription.paused", resumes_at=req.resumes_at, actor=req.actor)],
                features=[],
            )
            return self._view()

    @pause.validator
    def _validate_pause(self, req: PauseRequest) -> None:
        if self.status != S.ACTIVE:
            raise rejected(
                "subscription_not_pausable",
                f"Only an active subscription can be paused (it is {self.status})",
            )
        if req.resumes_at is not None and req.resumes_at <= self._now():
            raise rejected("invalid_resumes_at", "resumes_at must be in the future", 422)

    @workflow.update
    async def resume(self, req: ActorRequest) -> SubscriptionView:
        async with self._lock:
            await self._resume(actor=req.actor)
            self._dirty = True
            return self._view()

    @resume.validator
    def _validate_resume(self, req: ActorRequest) -> None:
        if self.status != S.PAUSED:
            raise rejected("subscription_not_paused", f"Subscription is {self.status}, not paused")

    @workflow.update
    async def extend_trial(self, req: ExtendTrialRequest) -> SubscriptionView:
        async with self._lock:
            s = self._s
            old = s.trial_end
            s.trial_end = req.trial_end
            s.billing_cycle_anchor = req.trial_end
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
            raise rejected("subscription_not_trialing", f"Subscription is {s.status}, not trialing")
        if req.trial_end.tzinfo is None or s.trial_end is None or req.trial_end <= s.trial_end:
            raise rejected(
                "invalid_trial_end", "trial_end must be a UTC time after the current trial end", 422
            )

    @workflow.update
    async def retry_payment(self, req: ActorRequest) -> ChargeOutcome:
        async with self._lock:
            outcome = await self._retry_open_invoice(actor=req.actor)
            self._dirty = True
            return outcome

    @retry_payment.validator
    def _validate_retry_payment(self, req: ActorRequest) -> None:
        if self.status not in (S.PAST_DUE, S.INCOMPLETE, S.UNPAID) or self._s.open_invoice is None:
            raise rejected(
                "nothing_to_retry", f"Subscription is {self.status} with no open invoice"
            )

    @workflow.update
    async def advance_clock(self, req: AdvanceClock) -> AdvanceResult:
        """Test clocks: answer once everything due up to the clock's new time is done."""
        epoch = self._clock.advance(req.to)
        # Runs recorded before this patch answered as soon as the status turned terminal,
        # which could be before the final state reached PostgreSQL.
        wait_for_projection = workflow.patched("advance-waits-for-final-projection")
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
            raise rejected("not_on_test_clock", "This subscription does not run on a test clock")

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

    def _initial_state(self, inp: SubscriptionInput) -> CarriedState:
        now = self._clock.now()
        trial_days = inp.plan.trial_days if inp.trial_days is None else inp.trial_days
        trial_end = now + timedelta(days=trial_days) if trial_days > 0 else None
        anchor = inp.billing_cycle_anchor or trial_end or now
        return CarriedState(
            status=S.TRIALING if trial_end else S.INCOMPLETE,
            plan=inp.plan,
            created_at=now,
            billing_cycle_anchor=anchor,
            trial_end=trial_end,
            current_period_start=now if trial_end else None,
            current_period_end=trial_end,
            clock_now=self._clock.test_now,
        )

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{workflow.uuid4().hex[:24]}"

    def _event(self, type_: str, actor: str | None = None, **data: object) -> EventDraft:
        return EventDraft(
            id=self._new_id("evt"),
            type=type_,
            subscription_id=self._in.subscription_id,
            customer_id=self._in.customer_id,
            occurred_at=self._now(),
            data={k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()},
            actor=actor,
        )

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

    def _take_pending_prorations(self) -> list[InvoiceLine]:
        lines = [InvoiceLine.model_validate(raw) for raw in self._s.pending_proration_lines]
        self._s.pending_proration_lines = []
        return lines

    async def _charge(
        self, invoice: InvoiceDraft, attempt: int, actor: str | None = None
    ) -> ChargeOutcome:
        outcome: ChargeOutcome = await workflow.execute_activity(
            "charge_invoice",
            ChargeRequest(invoice=invoice, attempt_number=attempt, actor=actor),
            result_type=ChargeOutcome,
            start_to_close_timeout=timedelta(seconds=60),
            schedule_to_close_timeout=timedelta(hours=6),
            retry_policy=CHARGE_RETRY,
            summary=f"charge {invoice.id} attempt {attempt}: {invoice.total} {invoice.currency}",
        )
        self._s.latest_invoice_id = invoice.id
        self._last_outcome = outcome
        return outcome

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
        return self._event(
            "invoice.payment_failed",
            invoice_id=invoice.id,
            attempt=outcome.attempt_number,
            decline_code=outcome.decline_code,
            failure_code=outcome.failure_code,
            actor=actor,
        )

    def _entitlement_events(self, features: list[str]) -> list[EventDraft]:
        before, after = set(self._s.granted_features), set(features)
        events = [
            self._event("entitlement.granted", feature=f, plan_id=self._s.plan.plan_id)
            for f in sorted(after - before)
        ]
        events += [self._event("entitlement.revoked", feature=f) for f in sorted(before - after)]
        return events

    async def _sync(
        self,
        events: list[EventDraft],
        *,
        features: list[str] | None = None,
        invoice_status: dict[str, str] | None = None,
    ) -> None:
        """Project state to PostgreSQL (read model, timeline, entitlements) and to Temporal."""
        s = self._s
        grant: EntitlementGrant | None = None
        if features is not None:
            events = events + self._entitlement_events(features)
            s.granted_features = list(features)
            grant = EntitlementGrant(
                features=list(features), plan_id=s.plan.plan_id, active_until=s.current_period_end
            )
        s.state_version += 1
        await workflow.execute_activity(
            "sync_subscription",
            SyncRequest(
                subscription=self._view(),
                events=events,
                entitlements=grant,
                invoice_status=invoice_status or {},
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=SYNC_RETRY,
            summary=", ".join(e.type for e in events) or "state",
        )
        self._publish()

    def _publish(self) -> None:
        """Search attributes and current details, for operators in the Temporal UI."""
        workflow.upsert_search_attributes(search_attribute_updates(self._s))
        workflow.set_current_details(
            current_details(self._s, self._clock.test_clock_id, self._now())
        )

    def _view(self) -> SubscriptionView:
        s = self._s
        return SubscriptionView(
            id=self._in.subscription_id,
            customer_id=self._in.customer_id,
            plan_id=s.plan.plan_id,
            status=s.status,
            current_period_start=s.current_period_start,
            current_period_end=s.current_period_end,
            billing_cycle_anchor=s.billing_cycle_anchor,
            trial_end=s.trial_end,
            cancel_at_period_end=s.cancel_at_period_end,
            canceled_at=s.canceled_at,
            pause=s.pause,
            pending_change=s.pending_change,
            latest_invoice_id=s.latest_invoice_id,
            dunning=s.dunning,
            test_clock_id=self._in.test_clock_id,
            created_at=s.created_at,
            state_version=s.state_version,
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


def _decision_dict(decision: object) -> dict[str, object]:
    return {k: str(getattr(decision, k)) for k in ("kind", "when", "proration")}
