"""Data shapes exchanged between the subscription workflow, its activities and the API.

Plain pydantic models (no table models, no I/O) so they are safe inside the workflow
sandbox and serialise as pydantic JSON (`workflows.converter`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from domain.invoices import InvoiceLine
from domain.plans import PlanTerms


class PlanSnapshot(PlanTerms):
    """A plan as the workflow saw it when it subscribed or changed to it."""

    name: str
    trial_days: int = 0
    # A metered plan (billed in arrears for its meter's usage: `amount` per started
    # `package_size` units) has its meter; a licensed plan has none.
    meter_id: str | None = None
    package_size: Annotated[int, Field(ge=1, strict=True)] = 1

    @property
    def metered(self) -> bool:
        return self.meter_id is not None


class InvoiceDraft(BaseModel):
    """An invoice the workflow decided to issue; the id is minted by the workflow."""

    id: str
    subscription_id: str
    customer_id: str
    currency: str
    billing_reason: str  # subscription_create | subscription_cycle | subscription_update | ...
    lines: list[InvoiceLine]
    period_start: datetime
    period_end: datetime
    created_at: datetime

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


class ChargeRequest(BaseModel):
    """Collect one invoice, attempt `attempt_number` (1-based)."""

    invoice: InvoiceDraft
    attempt_number: int
    actor: str | None = None
    # The subscription's test-clock time, recorded as the attempt's and the payment's time;
    # None (no test clock, or a history from before this field) records the wall clock.
    clock_time: datetime | None = None
    # A renewal's projection, decided before the charge: written by the charge activity
    # once this attempt is paid, so a paid renewal costs one local activity, not two.
    on_paid: SyncRequest | None = None


class ChargeOutcome(BaseModel):
    status: Literal["paid", "failed"]
    invoice_id: str
    attempt_number: int
    amount: int
    payment_intent_id: str | None = None
    decline_code: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    hard_decline: bool = False
    no_payment_method: bool = False
    projected: bool = False  # the request's `on_paid` projection was written


class RefundRequest(BaseModel):
    """Refund `amount` of a paid invoice; `credit_note` records the money moving back.
    `to_balance`: the part of the credit no cash payment can take back, credited back to
    the customer's balance once per credit note, up to what the balance paid of the
    period's invoices (from `period_start`): a discount, not the balance, may have paid
    the rest."""

    invoice_id: str
    subscription_id: str
    amount: int
    refund_key: str
    credit_note: InvoiceDraft
    to_balance: Annotated[int, Field(ge=0, strict=True)] = 0
    period_start: datetime | None = None


class RefundOutcome(BaseModel):
    refunded: int
    stripe_refund_ids: list[str] = Field(default_factory=list)
    to_balance: int = 0  # credited back to the balance


class EventDraft(BaseModel):
    """A timeline entry; its id is minted by the workflow, so a retried write is a no-op."""

    id: str
    type: str
    subscription_id: str
    customer_id: str
    occurred_at: datetime
    data: dict[str, object] = Field(default_factory=dict)
    actor: str | None = None


class DunningView(BaseModel):
    attempts: int = 0
    next_retry_at: datetime | None = None
    first_failure_at: datetime | None = None
    awaiting_payment_method: bool = False


class PauseView(BaseModel):
    paused_at: datetime
    resumes_at: datetime | None = None


class ItemView(BaseModel):
    """A subscription item as the API shows it."""

    id: str
    plan_id: str
    quantity: int


class PendingChangeView(BaseModel):
    plan_id: str
    effective_at: datetime
    proration: str = "none"
    # The items the change makes (a change of items; absent from a plan change of a run
    # from before items).
    items: list[ItemView] | None = None


class DiscountView(BaseModel):
    """A subscription's discount as the API shows it (`end` None: until removed or used)."""

    coupon_id: str
    promotion_code_id: str | None = None
    start: datetime
    end: datetime | None = None


class SubscriptionView(BaseModel):
    """What the API returns for a subscription, and what the read model stores."""

    id: str
    customer_id: str
    plan_id: str
    status: str
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    billing_cycle_anchor: datetime | None = None
    trial_end: datetime | None = None
    cancel_at_period_end: bool = False
    canceled_at: datetime | None = None
    pause: PauseView | None = None
    pending_change: PendingChangeView | None = None
    latest_invoice_id: str | None = None
    dunning: DunningView = Field(default_factory=DunningView)
    test_clock_id: str | None = None
    created_at: datetime
    state_version: int = 0
    discount: DiscountView | None = None
    # Empty only from a workflow started before items (its one item is in the read model).
    items: list[ItemView] = Field(default_factory=list)


class EntitlementGrant(BaseModel):
    """The complete set of features one subscription grants right now (empty = none)."""

    features: list[str]
    plan_id: str
    active_until: datetime | None = None


class SyncRequest(BaseModel):
    """Write the read model, append timeline events and set entitlements in one transaction."""

    subscription: SubscriptionView
    events: list[EventDraft] = Field(default_factory=list)
    entitlements: EntitlementGrant | None = None
    invoice_status: dict[str, str] = Field(default_factory=dict)


ChargeRequest.model_rebuild()  # `on_paid` names SyncRequest, defined after it
