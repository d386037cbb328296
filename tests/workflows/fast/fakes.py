"""In-memory stand-ins for the activities SubscriptionWorkflow calls, registered under the
same activity names, so the fast lane runs the real workflow without PostgreSQL or Stripe.

`FakePayments` answers each charge from a script kept per subscription (paid unless told
otherwise) and, like the real charge activity, writes the paid projection it was handed
(`on_paid`) through the ledger. `FakeLedger` keeps every projection it was asked to write:
the read model is its latest view, the timeline the concatenation of its events.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Literal

from temporalio import activity

from domain.contracts import (
    ChargeOutcome,
    ChargeRequest,
    EntitlementGrant,
    RefundOutcome,
    RefundRequest,
    SubscriptionView,
    SyncRequest,
)
from domain.dunning import is_hard_decline

# The activity names the workflow calls (strings, so the fakes do not depend on how the
# workflow's modules are laid out).
CHARGE = "charge_invoice"
REFUND = "refund_invoice"
SYNC = "sync_subscription"

# A scripted answer: "paid", "no_payment_method", or a decline code ("card_declined",
# "insufficient_funds" are retried; "stolen_card" and the other hard codes are not).
Answer = Literal[
    "paid",
    "no_payment_method",
    "card_declined",
    "insufficient_funds",
    "stolen_card",
]


class FakeLedger:
    """Every projection the workflow wrote, per subscription."""

    def __init__(self) -> None:
        self.syncs: defaultdict[str, list[SyncRequest]] = defaultdict(list)

    @activity.defn(name=SYNC)
    async def sync_subscription(self, req: SyncRequest) -> None:
        self.project(req)

    def project(self, req: SyncRequest) -> None:
        self.syncs[req.subscription.id].append(req)

    def view(self, sub_id: str) -> SubscriptionView:
        """The read model: the latest projected view."""
        return self.syncs[sub_id][-1].subscription

    def events(self, sub_id: str) -> list[str]:
        """Timeline entry types, in order."""
        return [e.type for req in self.syncs[sub_id] for e in req.events]

    def event_data(self, sub_id: str, type_: str) -> list[dict[str, object]]:
        return [e.data for req in self.syncs[sub_id] for e in req.events if e.type == type_]

    def entitlements(self, sub_id: str) -> EntitlementGrant | None:
        """The latest grant (projections without one leave it as it was)."""
        grants = [req.entitlements for req in self.syncs[sub_id] if req.entitlements]
        return grants[-1] if grants else None

    def invoice_status(self, sub_id: str) -> dict[str, str]:
        """Invoice statuses the workflow set (void, uncollectible), later ones winning."""
        out: dict[str, str] = {}
        for req in self.syncs[sub_id]:
            out.update(req.invoice_status)
        return out

    def versions(self, sub_id: str) -> list[int]:
        return [req.subscription.state_version for req in self.syncs[sub_id]]


class FakePayments:
    """Charges and refunds; answers charges from a per-subscription script."""

    def __init__(self, ledger: FakeLedger) -> None:
        self._ledger = ledger
        self._scripts: defaultdict[str, deque[Answer]] = defaultdict(deque)
        self.charges: defaultdict[str, list[ChargeRequest]] = defaultdict(list)
        self.refunds: defaultdict[str, list[RefundRequest]] = defaultdict(list)

    def script(self, sub_id: str, *answers: Answer) -> None:
        """The next charges of `sub_id` answer these, in order; then every charge is paid."""
        self._scripts[sub_id].extend(answers)

    def attempts(self, sub_id: str, reason: str | None = None) -> list[tuple[str, int]]:
        """(invoice id, attempt number) of every charge, optionally of one billing reason."""
        return [
            (c.invoice.id, c.attempt_number)
            for c in self.charges[sub_id]
            if reason is None or c.invoice.billing_reason == reason
        ]

    @activity.defn(name=CHARGE)
    async def charge_invoice(self, req: ChargeRequest) -> ChargeOutcome:
        invoice = req.invoice
        sub_id = invoice.subscription_id
        self.charges[sub_id].append(req)
        script = self._scripts[sub_id]
        answer: Answer = script.popleft() if script else "paid"
        base = ChargeOutcome(
            status="paid",
            invoice_id=invoice.id,
            attempt_number=req.attempt_number,
            amount=invoice.total,
        )
        if answer == "paid":
            if req.on_paid is None:
                return base
            # As the real activity: the paid projection decided before the charge.
            self._ledger.project(req.on_paid)
            return base.model_copy(update={"projected": True})
        if answer == "no_payment_method":
            return base.model_copy(
                update={
                    "status": "failed",
                    "failure_code": "no_payment_method",
                    "no_payment_method": True,
                }
            )
        return base.model_copy(
            update={
                "status": "failed",
                "failure_code": "card_declined",
                "decline_code": answer,
                "hard_decline": is_hard_decline(answer),
            }
        )

    @activity.defn(name=REFUND)
    async def refund_invoice(self, req: RefundRequest) -> RefundOutcome:
        self.refunds[req.subscription_id].append(req)
        return RefundOutcome(refunded=req.amount)
