"""`Subscription`: what every lifecycle step works on.

It holds what a run carries (the input, the state handed from run to run, the clock, the
run's patches) and does what every step does: mint ids, timeline events and invoices,
charge, refund and project (the activity calls are in `calls.py`).

A paid invoice changes the state by one rule (`paid`): either on a copy decided before the
charge, which the charge activity writes once it is paid (one local activity per paid
opening invoice), or on the state itself after the charge.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from temporalio import workflow

from domain import errors
from domain.balance import settle
from domain.contracts import (
    ChargeOutcome,
    EventDraft,
    InvoiceDraft,
    PlanSnapshot,
    SubscriptionView,
)
from domain.discounts import apply_discount, discounted_total, ended
from domain.invoices import InvoiceLine, LineKind
from domain.items import Item, legacy_item_id
from domain.status import SubscriptionStatus as S
from workflows.clock import WorkflowClock
from workflows.errors import rejected
from workflows.invoicing import carry_credit
from workflows.lifecycle.calls import ActivityCalls
from workflows.messages import CarriedState, PeriodPayment, SubscriptionInput
from workflows.patches import (
    DISCOUNTS,
    ITEMS_AND_BALANCE,
    RunPatches,
)
from workflows.projection import (
    event_draft,
    features,
    initial_state,
    subscription_view,
    sync_request,
)

# What a paid invoice does beyond recording the payment: changes `state` (a copy, or the
# state itself) and returns the events that follow `invoice.paid`.
WhenPaid = Callable[[CarriedState], list[EventDraft]]


class Subscription(ActivityCalls):
    """One run's subscription: built in the workflow's `__init__`, then handed to every step.
    Steps change `state` and call the helpers below; they never touch the workflow itself."""

    def __init__(self, inp: SubscriptionInput) -> None:
        self.inp = inp
        carried = inp.carried
        self.clock = WorkflowClock(
            inp.test_clock_id,
            carried.clock_now if carried else inp.clock_now,
            carried.clock_cursor if carried else None,
        )
        self.state: CarriedState = carried or initial_state(inp, self.clock.now())
        self.patches = RunPatches()
        # Something changed that may move what is due next: the run loop recomputes it.
        self.dirty = False
        # An update that may lead to a charge was delivered and may not be in history yet.
        self.update_not_durable = False
        # Temporal was asked to cancel the workflow while an activity was in flight.
        self.cancel_requested = False
        # Events of state changed along the way (a `once` discount used up by an invoice),
        # projected with the next projection.
        self.pending_events: list[EventDraft] = []

    @property
    def status(self) -> S:
        return S(self.state.status)

    def view(self) -> SubscriptionView:
        return subscription_view(self.inp, self.state)

    # ------------------------------------------------------------------ ids, events, invoices

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{workflow.uuid4().hex[:24]}"

    def event(self, type_: str, actor: str | None = None, **data: object) -> EventDraft:
        return event_draft(self.inp, self.new_id("evt"), type_, self.clock.now(), actor, **data)

    def paid_events(
        self, invoice: InvoiceDraft, outcome: ChargeOutcome, actor: str | None = None
    ) -> list[EventDraft]:
        return [
            self.event(
                "invoice.paid",
                invoice_id=invoice.id,
                amount=outcome.amount,
                attempt=outcome.attempt_number,
                actor=actor,
            )
        ]

    def failed_event(
        self, invoice: InvoiceDraft, outcome: ChargeOutcome, actor: str | None = None
    ) -> EventDraft:
        """`invoice.payment_failed`; the decline is kept for operators (current details)."""
        self.state.last_decline = outcome.decline_code or outcome.failure_code
        return self.event(
            "invoice.payment_failed",
            invoice_id=invoice.id,
            attempt=outcome.attempt_number,
            decline_code=outcome.decline_code,
            failure_code=outcome.failure_code,
            actor=actor,
        )

    def invoice(
        self,
        reason: str,
        lines: list[InvoiceLine],
        start: datetime,
        end: datetime,
        invoice_id: str | None = None,
        *,
        preview: bool = False,
    ) -> InvoiceDraft:
        """An invoice with the discount line it gets (`preview`: one never issued;
        `invoice_id` when the id was minted before, usage claimed for it)."""
        invoice_id = invoice_id or self.new_id("in")
        return self._draft(
            invoice_id, reason, self._discounted(invoice_id, lines, preview, start), start, end
        )

    def build_invoice(
        self,
        reason: str,
        lines: list[InvoiceLine],
        start: datetime,
        end: datetime,
        invoice_id: str | None = None,
        *,
        preview: bool = False,
    ) -> tuple[InvoiceDraft, InvoiceLine | None]:
        """An invoice never below zero, its discount first: a net credit then goes to the
        customer's balance (a `balance` line brings the total to zero; the charge activity
        credits the ledger, and applies available credit last to any other invoice). Runs
        from before items carry it to the next invoice as a `credit` line (returned).
        `invoice_id` when the id was minted before (usage claimed for it)."""
        invoice_id = invoice_id or self.new_id("in")
        lines = self._discounted(invoice_id, lines, preview, start)
        if self.items_on():
            settled = settle(lines, 0, self.clock.now())
            return self._draft(invoice_id, reason, settled.lines, start, end), None
        lines, carried = carry_credit(lines, self.clock.now())
        return self._draft(invoice_id, reason, lines, start, end), carried

    def _draft(
        self, invoice_id: str, reason: str, lines: list[InvoiceLine], start: datetime, end: datetime
    ) -> InvoiceDraft:
        return InvoiceDraft(
            id=invoice_id,
            subscription_id=self.inp.subscription_id,
            customer_id=self.inp.customer_id,
            currency=self.state.plan.currency,
            billing_reason=reason,
            lines=lines,
            period_start=start,
            period_end=end,
            created_at=self.clock.now(),
        )

    def _discounted(
        self, invoice_id: str, lines: list[InvoiceLine], preview: bool, start: datetime
    ) -> list[InvoiceLine]:
        """`lines` with the held discount's line, if this invoice gets one. A `once`
        discount is used up by an issued invoice: the subscription stops holding it, and
        the next projection says so (`subscription.discount_ended`). A preview is of an
        invoice made at its `start` (the next renewal, say), so the discount is taken as it
        will be then."""
        discount = self.state.discount
        if discount is None or not self.patches.use(DISCOUNTS):
            return lines
        now = self.clock.now()
        at = max(now, start) if preview else now
        lines, after = apply_discount(discount, lines, invoice_id, at)
        if not preview and after is not None and ended(after, now):
            self.state.discount = None
            self.pending_events.append(
                self.event(
                    "subscription.discount_ended", None, invoice_id=invoice_id, **after.event_data()
                )
            )
        return lines

    def prorated(self, plan: PlanSnapshot) -> PlanSnapshot:
        """`plan` at the price proration uses now: its total after a percent discount that
        is active and covers it (DESIGN: proration is priced on discounted totals). Called
        by validators too, so it asks for no patch: a run without a discount (every run
        recorded before DISCOUNTS) gets `plan` unchanged."""
        discount = self.state.discount
        if discount is None:
            return plan
        amount = discounted_total(discount, plan.plan_id, plan.amount, self.clock.now())
        return plan if amount == plan.amount else plan.model_copy(update={"amount": amount})

    def item_price(self, item: Item) -> int:
        """An item's total per period as proration prices it now: amount x quantity, after
        a percent discount that is active and covers its plan (no patch asked, as for
        `prorated`)."""
        return discounted_total(
            self.state.discount, item.plan.plan_id, item.total, self.clock.now()
        )

    async def charge_for_change(
        self, lines: list[InvoiceLine], start: datetime, end: datetime, actor: str | None
    ) -> tuple[InvoiceDraft, ChargeOutcome, list[EventDraft], InvoiceLine | None]:
        """Invoice a change's lines now and charge them before the change takes effect: a
        declined charge voids the invoice and rejects the change (409 `payment_failed`).
        Returns the paid invoice, its outcome, its events and any credit carried (runs from
        before items; with items a net credit goes to the balance)."""
        invoice, carried = self.build_invoice("subscription_update", lines, start, end)
        latest = self.state.latest_invoice_id
        outcome = await self.charge(invoice, 1, actor=actor)
        if outcome.status != "paid":
            self.state.latest_invoice_id = latest
            await self.sync(
                [self.failed_event(invoice, outcome, actor=actor)],
                invoice_status={invoice.id: "void"},
            )
            raise rejected(
                errors.PAYMENT_FAILED(
                    f"The change was not applied: the charge of {invoice.total} was declined "
                    f"({outcome.decline_code or outcome.failure_code})"
                )
            )
        return invoice, outcome, self.paid_events(invoice, outcome, actor=actor), carried

    # ------------------------------------------------------------------ items

    def items_on(self) -> bool:
        """Whether this run bills items (ITEMS_AND_BALANCE). The first time a run from before
        items says yes, its plan becomes its one item (the id the migration gave it), and
        the credit it carried as a `credit` line is dropped: the migration moved it to the
        customer's balance."""
        if not self.patches.use(ITEMS_AND_BALANCE):
            return False
        s = self.state
        if not s.items:
            s.items = [Item(id=legacy_item_id(self.inp.subscription_id), plan=s.plan)]
            s.pending_proration_lines = [
                line for line in s.pending_proration_lines if line.kind != LineKind.CREDIT
            ]
            if s.pending_plan is not None:  # a plan change scheduled before: its one item
                s.pending_items = [Item(id=self.new_id("si"), plan=s.pending_plan)]
                s.pending_plan = None
        return True

    def items(self) -> list[Item]:
        """The items as they bill: those of the state, else the one item of its plan."""
        s = self.state
        return list(s.items) or [Item(id=legacy_item_id(self.inp.subscription_id), plan=s.plan)]

    def features(self, state: CarriedState | None = None) -> list[str]:
        """What the subscription (or `state`, a copy) entitles to."""
        return features(state or self.state)

    def start_period(self, start: datetime, end: datetime) -> None:
        s = self.state
        s.current_period_start, s.current_period_end = start, end
        s.changes_this_period = 0
        s.period_payments = []

    # ------------------------------------------------------------------ a paid invoice

    def paid(
        self,
        state: CarriedState,
        invoice: InvoiceDraft,
        outcome: ChargeOutcome,
        before: list[EventDraft],
        when_paid: WhenPaid,
        actor: str | None = None,
    ) -> list[EventDraft]:
        """The one rule for a paid invoice: it is the latest, its cash counts for the period,
        `when_paid` makes the step's own change; returns `before`, `invoice.paid` and
        `when_paid`'s events, in that order."""
        state.latest_invoice_id = invoice.id
        record_payment(state, invoice, outcome)
        return [*before, *self.paid_events(invoice, outcome, actor), *when_paid(state)]

    async def settle_paid(
        self,
        invoice: InvoiceDraft,
        outcome: ChargeOutcome,
        before: list[EventDraft],
        when_paid: WhenPaid,
        actor: str | None = None,
    ) -> None:
        """Apply a paid outcome to the state (`paid`) and project it with the plan's features."""
        events = self.paid(self.state, invoice, outcome, before, when_paid, actor)
        await self.sync(events, features=self.features())

    async def charge_opening(
        self, patch: str, invoice: InvoiceDraft, before: list[EventDraft], when_paid: WhenPaid
    ) -> ChargeOutcome:
        """Charge attempt 1 of the invoice that opens a period; when it is paid, the state and
        its projection are done here. Runs with `patch` decide the paid case first and hand
        its projection to the charge activity, to write once it is paid (one local activity
        instead of two); runs recorded before it charge, then project."""
        if self.patches.use(patch):
            outcome = await self._charge_projected(invoice, before, when_paid)
            if outcome.projected:
                return outcome
            # Failed, or paid by another attempt: decided below from the outcome.
        else:
            outcome = await self.charge(invoice, 1)
        if outcome.status == "paid":
            await self.settle_paid(invoice, outcome, before, when_paid)
        return outcome

    async def _charge_projected(
        self, invoice: InvoiceDraft, before: list[EventDraft], when_paid: WhenPaid
    ) -> ChargeOutcome:
        """The charge, given the projection of its paid case, decided on a copy of the state;
        the copy becomes the state only if the charge activity wrote that projection."""
        paid = self.state.model_copy(deep=True)
        expected = ChargeOutcome(
            status="paid", invoice_id=invoice.id, attempt_number=1, amount=invoice.total
        )
        events = [*self.paid(paid, invoice, expected, before, when_paid), *self.pending_events]
        request = sync_request(
            self.inp, paid, events, self.clock.now(), self.new_id, features=self.features(paid)
        )
        outcome = await self.charge(invoice, 1, on_paid=request)
        if outcome.projected:
            self.pending_events = []
            # Nothing else touched the state meanwhile: updates wait for the lock the step
            # holds, and the signals change only a past-due or incomplete subscription.
            self.state = paid
            if outcome.amount != expected.amount and self.patches.use(ITEMS_AND_BALANCE):
                # The customer's balance paid part of it: only the cash counts for a refund.
                paid.period_payments = [
                    p for p in paid.period_payments if p.invoice_id != invoice.id
                ]
                record_payment(paid, invoice, outcome)
            self.publish()
        return outcome


def record_payment(state: CarriedState, invoice: InvoiceDraft, outcome: ChargeOutcome) -> None:
    """Remember cash collected for this period: what a prorated refund can return."""
    if outcome.status == "paid" and outcome.amount > 0:
        state.period_payments.append(PeriodPayment(invoice_id=invoice.id, amount=outcome.amount))
