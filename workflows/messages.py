"""Messages into and out of `SubscriptionWorkflow`: its input, updates, signals and queries."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from domain.contracts import (
    DunningView,
    InvoiceDraft,
    PauseView,
    PendingChangeView,
    PlanSnapshot,
    SubscriptionView,
)
from domain.discounts import Discount, DiscountGrant
from domain.dunning import DunningPolicy
from domain.invoices import InvoiceLine
from domain.items import Item
from domain.plan_change import ChangeWhen, PlanChangePolicy, ProrationBehavior
from domain.usage_contracts import MeteredItem


def workflow_id_for(subscription_id: str) -> str:
    """One workflow per subscription; the id says what it is in the Temporal UI."""
    return f"subscription/{subscription_id}"


class UsageStretch(BaseModel):
    """Usage of a metered item up to a change in the middle of a period (the item left, or
    the period restarted): billed on the next invoice that bills usage."""

    item: MeteredItem
    start: datetime
    end: datetime


class PeriodPayment(BaseModel):
    """Money collected for the current period: what a prorated refund may give back."""

    invoice_id: str
    amount: int


class CarriedState(BaseModel):
    """Everything a run hands to the next one through continue-as-new."""

    status: str
    plan: PlanSnapshot
    created_at: datetime
    billing_cycle_anchor: datetime
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    trial_end: datetime | None = None
    trial_will_end_sent: bool = False
    cancel_at_period_end: bool = False
    canceled_at: datetime | None = None
    pause: PauseView | None = None
    pending_change: PendingChangeView | None = None
    pending_plan: PlanSnapshot | None = None
    # The items (`plan` is the first item's plan); empty in runs from before items, whose
    # one item is derived from `plan` when first needed (`Subscription.items_on`).
    items: list[Item] = Field(default_factory=list)
    # A change of items waiting for the period end.
    pending_items: list[Item] | None = None
    # Lines waiting for the next invoice: create_prorations, carried credits, pause credit.
    pending_proration_lines: list[InvoiceLine] = Field(default_factory=list)
    # Usage of metered items changed away mid-period, waiting for the next usage billing.
    unbilled_usage: list[UsageStretch] = Field(default_factory=list)
    period_payments: list[PeriodPayment] = Field(default_factory=list)
    latest_invoice_id: str | None = None
    open_invoice: InvoiceDraft | None = None
    incomplete_attempts: int = 0
    dunning: DunningView = Field(default_factory=DunningView)
    granted_features: list[str] = Field(default_factory=list)
    changes_this_period: int = 0
    state_version: int = 0
    clock_now: datetime | None = None
    clock_cursor: datetime | None = None
    renewals: int = 0
    # For operators (the Temporal UI's current details): why the last charge failed, why
    # the subscription ended, what its cancel refunded.
    last_decline: str | None = None
    cancel_reason: str | None = None
    refunded: int = 0
    # The one discount the subscription holds (None: none, or from before discounts).
    discount: Discount | None = None


class BillingPolicy(BaseModel):
    """The configurable billing rules a subscription runs under (from `Settings`)."""

    dunning: DunningPolicy = Field(default_factory=DunningPolicy)
    plan_change: PlanChangePolicy = Field(default_factory=PlanChangePolicy)
    incomplete_expiry_hours: int = 23
    trial_will_end_days: int = 3
    # What a cancel requested through Temporal (not the API) refunds: none, or prorated.
    temporal_cancel_refund: str = "none"
    # Seconds after a period's end before its usage is invoiced (late events still count).
    usage_grace_seconds: int = 3600


class SubscriptionInput(BaseModel):
    """Start arguments; `carried` is set only when a run continues as new."""

    subscription_id: str
    customer_id: str
    plan: PlanSnapshot
    trial_days: int | None = None
    test_clock_id: str | None = None
    clock_now: datetime | None = None
    billing_cycle_anchor: datetime | None = None
    has_payment_method: bool = True
    actor: str | None = None
    customer_email: str | None = None  # as at creation, shown to operators
    # The items subscribed to (the first one's plan is `plan`); empty from an API from
    # before items: one item of `plan`, quantity 1.
    items: list[Item] = Field(default_factory=list)
    policy: BillingPolicy = Field(default_factory=BillingPolicy)
    # A coupon redeemed with the creation: the discount starts with the subscription.
    discount: DiscountGrant | None = None
    carried: CarriedState | None = None


class AdvanceClock(BaseModel):
    to: datetime


class AdvanceResult(BaseModel):
    """`caught_up` is False when the run continued as new before catching up: ask again."""

    caught_up: bool
    now: datetime
    status: str


class ChangePlanRequest(BaseModel):
    plan: PlanSnapshot
    when: ChangeWhen | None = None
    proration: ProrationBehavior | None = None
    preview: bool = False
    actor: str | None = None


class ChangePlanResult(BaseModel):
    """`invoice` is what the change charged now (None: nothing now); a preview answers with
    `invoice_preview` instead: the invoice charged now, or else the next renewal invoice."""

    subscription: SubscriptionView
    decision: dict[str, str] | None = None
    invoice: InvoiceDraft | None = None
    invoice_preview: InvoiceDraft | None = None
    preview: bool = False


class UpdateItemsRequest(BaseModel):
    """The new full set of items (ids of plans already on the subscription are kept)."""

    items: list[Item]
    when: ChangeWhen | None = None
    proration: ProrationBehavior | None = None
    preview: bool = False
    actor: str | None = None


class CancelRequest(BaseModel):
    at_period_end: bool = True
    refund: str = "none"  # none | prorated
    actor: str | None = None


class ActorRequest(BaseModel):
    """A lifecycle request whose only content is who asked."""

    actor: str | None = None


class SetDiscountRequest(BaseModel):
    """Hold this redeemed coupon's discount from now on, replacing the one held."""

    grant: DiscountGrant
    actor: str | None = None


class PauseRequest(BaseModel):
    resumes_at: datetime | None = None
    actor: str | None = None


class ExtendTrialRequest(BaseModel):
    trial_end: datetime
    actor: str | None = None


class PaymentMethodChanged(BaseModel):
    payment_method: str
    actor: str | None = None


class PaymentSucceeded(BaseModel):
    """An asynchronous payment outcome reported by Stripe (webhook)."""

    invoice_id: str
    payment_intent_id: str
