"""SubscriptionWorkflow: one durable workflow owns one subscription's whole life.

This module is the run loop and the messages. The loop starts the subscription (a trial
or the first charge), then waits for the next step due — the trial ending, the period
end, a dunning retry, the expiry of an incomplete first payment, the end of a pause — and
does it. Updates (change plan, cancel, pause, ...) validate first, so a rejected request
leaves no trace, then change state under the same lock the loop uses. A run covers up to
`PERIODS_PER_RUN` renewals (a year of a monthly plan), then continues as new, so history
stays bounded. The steps themselves are in `workflows/lifecycle/`, one module per part of
the lifecycle, each working on the run's `Subscription` context.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

from domain import errors
from domain.contracts import ChargeOutcome, SubscriptionView
from domain.status import TERMINAL
from workflows.errors import rejected
from workflows.lifecycle import items
from workflows.lifecycle.cancel import (
    cancel_as_requested_in_temporal,
    request_cancel,
    undo_cancel,
    validate_cancel,
    validate_reactivate,
)
from workflows.lifecycle.change_plan import request_change, validate_change_plan
from workflows.lifecycle.context import Subscription
from workflows.lifecycle.discount import (
    remove_discount,
    set_discount,
    validate_remove_discount,
    validate_set_discount,
)
from workflows.lifecycle.dunning import (
    on_payment_method_changed,
    on_payment_succeeded,
    retry_open_invoice,
    validate_retry_payment,
)
from workflows.lifecycle.pause import resume_now, start_pause, validate_pause, validate_resume
from workflows.lifecycle.start import begin
from workflows.lifecycle.steps import next_step, perform
from workflows.lifecycle.trial import move_trial_end, validate_extend_trial
from workflows.messages import (
    ActorRequest,
    AdvanceClock,
    AdvanceResult,
    CancelRequest,
    ChangePlanRequest,
    ChangePlanResult,
    ExtendTrialRequest,
    PauseRequest,
    PaymentMethodChanged,
    PaymentSucceeded,
    SetDiscountRequest,
    SubscriptionInput,
    UpdateItemsRequest,
)
from workflows.patches import (
    ADVANCE_WAITS_FOR_FINAL_PROJECTION,
    CANCEL_REQUEST_CANCELS,
    ITEMS_AND_BALANCE,
    LEAN_RENEWALS,
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
        self._sub = Subscription(inp)
        self._started = inp.carried is not None
        self._continuing = False
        self._finished = False
        self._lock = asyncio.Lock()
        self._renewals_in_run = 0

    # ------------------------------------------------------------------ the run

    @workflow.run
    async def run(self, inp: SubscriptionInput) -> SubscriptionView:
        self._sub.patches.at_run_start()
        try:
            await self._live()
        except asyncio.CancelledError:
            # An operator asked Temporal to cancel the workflow (the UI's "Request
            # Cancellation", `temporal workflow cancel`): that ends the subscription like
            # an immediate cancel, not the workflow behind the read model's back.
            if not self._sub.patches.use(CANCEL_REQUEST_CANCELS):
                raise
            await self._cancel_as_requested_in_temporal()
        self._finished = True  # only now is the final state projected
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._sub.view()

    async def _live(self) -> None:
        """The first decision, then every step that falls due, until the end."""
        sub = self._sub
        if not self._started:
            async with self._lock:
                await begin(sub)
            self._started = True
        while sub.status not in TERMINAL:
            if sub.cancel_requested:
                await self._cancel_as_requested_in_temporal()
                return
            step, due = next_step(sub)
            woken = await sub.clock.wait(due, lambda: sub.dirty)
            if woken:
                sub.dirty = False
                continue  # something changed: recompute what is due next
            async with self._lock:
                if next_step(sub) != (step, due):
                    continue  # a handler moved things while we queued for the lock
                renewed = await perform(sub, step)
            if self._run_is_full(renewed):
                await self._continue_as_new()

    async def _cancel_as_requested_in_temporal(self) -> None:
        async with self._lock:
            if self._sub.status in TERMINAL:
                return
            await cancel_as_requested_in_temporal(self._sub)

    def _run_is_full(self, renewed: bool) -> bool:
        """Time to continue as new: after PERIODS_PER_RUN renewals, or a long history."""
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        if not self._sub.patches.use(LEAN_RENEWALS):
            return renewed  # the recorded behaviour: a run per period
        if renewed:
            self._renewals_in_run += 1
        return (
            self._renewals_in_run >= PERIODS_PER_RUN
            or info.get_current_history_length() >= HISTORY_PER_RUN
        )

    async def _continue_as_new(self) -> None:
        """Hand state to a fresh run once in-flight handlers are done."""
        sub = self._sub
        self._continuing = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        sub.state.clock_now = sub.clock.test_now
        sub.state.clock_cursor = sub.clock.cursor
        workflow.continue_as_new(sub.inp.model_copy(update={"carried": sub.state}))

    # ------------------------------------------------------------------ updates

    @workflow.update
    async def initial_state(self) -> SubscriptionView:
        """Sent with the start (update-with-start): answers once the first charge or trial
        is decided."""
        await workflow.wait_condition(lambda: self._started)
        return self._sub.view()

    @workflow.update
    async def change_plan(self, req: ChangePlanRequest) -> ChangePlanResult:
        """Upgrade, downgrade or switch interval; `preview` computes and changes nothing."""
        self._sub.update_not_durable = True
        async with self._lock:
            return await request_change(self._sub, req)

    @change_plan.validator
    def _validate_change_plan(self, req: ChangePlanRequest) -> None:
        validate_change_plan(self._sub, req)

    @workflow.update
    async def update_items(self, req: UpdateItemsRequest) -> ChangePlanResult:
        """The new full set of items: increases now (invoiced at once), decreases at the
        period end unless asked for now; `preview` computes and changes nothing."""
        self._sub.update_not_durable = True
        async with self._lock:
            if not self._sub.items_on():
                raise rejected(
                    errors.UPDATE_REJECTED("This subscription's run cannot change items")
                )
            return await items.request(self._sub, items.from_request(req))

    @update_items.validator
    def _validate_update_items(self, req: UpdateItemsRequest) -> None:
        if not self._sub.patches.expects(ITEMS_AND_BALANCE):
            raise rejected(errors.UPDATE_REJECTED("This subscription's run cannot change items"))
        items.validate(self._sub, items.from_request(req))

    @workflow.update
    async def cancel(self, req: CancelRequest) -> SubscriptionView:
        self._sub.update_not_durable = True
        async with self._lock:
            await request_cancel(self._sub, req)
            return self._sub.view()

    @cancel.validator
    def _validate_cancel(self, req: CancelRequest) -> None:
        validate_cancel(self._sub, req)

    @workflow.update
    async def reactivate(self, req: ActorRequest) -> SubscriptionView:
        async with self._lock:
            await undo_cancel(self._sub, req)
            return self._sub.view()

    @reactivate.validator
    def _validate_reactivate(self, req: ActorRequest) -> None:
        validate_reactivate(self._sub)

    @workflow.update
    async def pause(self, req: PauseRequest) -> SubscriptionView:
        async with self._lock:
            await start_pause(self._sub, req)
            return self._sub.view()

    @pause.validator
    def _validate_pause(self, req: PauseRequest) -> None:
        validate_pause(self._sub, req)

    @workflow.update
    async def resume(self, req: ActorRequest) -> SubscriptionView:
        self._sub.update_not_durable = True
        async with self._lock:
            await resume_now(self._sub, actor=req.actor)
            self._sub.dirty = True
            return self._sub.view()

    @resume.validator
    def _validate_resume(self, req: ActorRequest) -> None:
        validate_resume(self._sub)

    @workflow.update
    async def extend_trial(self, req: ExtendTrialRequest) -> SubscriptionView:
        async with self._lock:
            await move_trial_end(self._sub, req)
            return self._sub.view()

    @extend_trial.validator
    def _validate_extend_trial(self, req: ExtendTrialRequest) -> None:
        validate_extend_trial(self._sub, req)

    @workflow.update
    async def retry_payment(self, req: ActorRequest) -> ChargeOutcome:
        self._sub.update_not_durable = True
        async with self._lock:
            outcome = await retry_open_invoice(self._sub, actor=req.actor)
            self._sub.dirty = True
            return outcome

    @retry_payment.validator
    def _validate_retry_payment(self, req: ActorRequest) -> None:
        validate_retry_payment(self._sub)

    @workflow.update
    async def set_discount(self, req: SetDiscountRequest) -> SubscriptionView:
        """Hold a redeemed coupon's discount from now, replacing the one held."""
        async with self._lock:
            await set_discount(self._sub, req)
            return self._sub.view()

    @set_discount.validator
    def _validate_set_discount(self, req: SetDiscountRequest) -> None:
        validate_set_discount(self._sub)

    @workflow.update
    async def remove_discount(self, req: ActorRequest) -> SubscriptionView:
        async with self._lock:
            await remove_discount(self._sub, req)
            return self._sub.view()

    @remove_discount.validator
    def _validate_remove_discount(self, req: ActorRequest) -> None:
        validate_remove_discount(self._sub)

    @workflow.update
    async def advance_clock(self, req: AdvanceClock) -> AdvanceResult:
        """Test clocks: answer once everything due up to the clock's new time is done."""
        sub = self._sub
        sub.update_not_durable = True  # the loop may renew (charge) at once
        epoch = sub.clock.advance(req.to)
        wait_for_projection = sub.patches.use(ADVANCE_WAITS_FOR_FINAL_PROJECTION)
        await workflow.wait_condition(
            lambda: (
                sub.clock.caught_up(epoch)
                or self._continuing
                or (self._finished if wait_for_projection else sub.status in TERMINAL)
            )
        )
        caught_up = not self._continuing or sub.clock.caught_up(epoch)
        return AdvanceResult(caught_up=caught_up, now=sub.clock.now(), status=sub.status)

    @advance_clock.validator
    def _validate_advance_clock(self, req: AdvanceClock) -> None:
        if not self._sub.clock.is_test_clock:
            raise rejected(
                errors.NOT_ON_TEST_CLOCK("This subscription does not run on a test clock")
            )

    # ------------------------------------------------------------------ signals, queries

    @workflow.signal
    def payment_method_changed(self, msg: PaymentMethodChanged) -> None:
        on_payment_method_changed(self._sub, msg)

    @workflow.signal
    def payment_succeeded(self, msg: PaymentSucceeded) -> None:
        on_payment_succeeded(self._sub, msg)

    @workflow.query
    def state(self) -> SubscriptionView:
        return self._sub.view()
