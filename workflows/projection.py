"""What a subscription's state looks like from outside: its view, its timeline entries and
its entitlements. Pure functions of the workflow's input and state.

The workflow projects through them, and so does the API when it creates a subscription
with a trial: nothing is charged then, so the API decides the first state itself (the
same `initial_state`, the same `trial_start` projection), writes it, and starts the
workflow from that state instead of waiting for the workflow to decide it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from domain.contracts import (
    EntitlementGrant,
    EventDraft,
    ItemView,
    SubscriptionView,
    SyncRequest,
)
from domain.discounts import grant_discount
from domain.items import features_of
from domain.status import SubscriptionStatus as S
from workflows.messages import CarriedState, SubscriptionInput

# Mints a prefixed id: `workflow.uuid4()`-based in the workflow, random in the API.
NewId = Callable[[str], str]


def initial_state(inp: SubscriptionInput, now: datetime) -> CarriedState:
    """A new subscription at `now`: trialing (trial days from the request or the plan), or
    incomplete until its first charge is decided."""
    trial_days = inp.plan.trial_days if inp.trial_days is None else inp.trial_days
    trial_end = now + timedelta(days=trial_days) if trial_days > 0 else None
    anchor = inp.billing_cycle_anchor or trial_end or now
    return CarriedState(
        status=S.TRIALING if trial_end else S.INCOMPLETE,
        plan=inp.plan,
        items=list(inp.items),
        created_at=now,
        billing_cycle_anchor=anchor,
        trial_end=trial_end,
        current_period_start=now if trial_end else None,
        current_period_end=trial_end,
        clock_now=inp.clock_now,
        discount=grant_discount(inp.discount, now) if inp.discount else None,
    )


def subscription_view(inp: SubscriptionInput, s: CarriedState) -> SubscriptionView:
    return SubscriptionView(
        id=inp.subscription_id,
        customer_id=inp.customer_id,
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
        test_clock_id=inp.test_clock_id,
        created_at=s.created_at,
        state_version=s.state_version,
        discount=s.discount.view() if s.discount else None,
        items=[ItemView(id=i.id, plan_id=i.plan.plan_id, quantity=i.quantity) for i in s.items],
    )


def features(s: CarriedState) -> list[str]:
    """What the subscription entitles to: the union of its items' features (its plan's in
    a run from before items)."""
    return features_of(s.items) if s.items else s.plan.features


def event_draft(
    inp: SubscriptionInput,
    event_id: str,
    type_: str,
    occurred_at: datetime,
    actor: str | None = None,
    /,
    **data: object,
) -> EventDraft:
    """A timeline entry; the parameters are positional so that any name can be a data key."""
    return EventDraft(
        id=event_id,
        type=type_,
        subscription_id=inp.subscription_id,
        customer_id=inp.customer_id,
        occurred_at=occurred_at,
        data={k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()},
        actor=actor,
    )


def sync_request(
    inp: SubscriptionInput,
    s: CarriedState,
    events: list[EventDraft],
    at: datetime,
    new_id: NewId,
    *,
    features: list[str] | None = None,
    invoice_status: dict[str, str] | None = None,
) -> SyncRequest:
    """The next projection of `s`: its view at the next state version, `events`, and, when
    `features` is given, the entitlements (with an event for each feature granted or
    revoked). Updates `s` (state version, granted features) to match what it describes."""
    grant: EntitlementGrant | None = None
    if features is not None:
        before, after = set(s.granted_features), set(features)
        events = [
            *events,
            *(
                event_draft(
                    inp, new_id("evt"), "entitlement.granted", at, feature=f, plan_id=s.plan.plan_id
                )
                for f in sorted(after - before)
            ),
            *(
                event_draft(inp, new_id("evt"), "entitlement.revoked", at, feature=f)
                for f in sorted(before - after)
            ),
        ]
        s.granted_features = list(features)
        grant = EntitlementGrant(
            features=list(features), plan_id=s.plan.plan_id, active_until=s.current_period_end
        )
    s.state_version += 1
    return SyncRequest(
        subscription=subscription_view(inp, s),
        events=events,
        entitlements=grant,
        invoice_status=invoice_status or {},
    )


def trial_start(
    inp: SubscriptionInput, s: CarriedState, at: datetime, new_id: NewId
) -> SyncRequest:
    """A trial begins: created, trial started, the plan's features granted."""
    created = event_draft(inp, new_id("evt"), "subscription.created", at, plan_id=s.plan.plan_id)
    started = event_draft(
        inp, new_id("evt"), "subscription.trial_started", at, trial_end=s.trial_end
    )
    events = [created, started, *discount_applied(inp, s, at, new_id)]
    return sync_request(inp, s, events, at, new_id, features=features(s))


def discount_applied(
    inp: SubscriptionInput, s: CarriedState, at: datetime, new_id: NewId
) -> list[EventDraft]:
    """`subscription.discount_applied` for a discount redeemed with the creation."""
    if s.discount is None:
        return []
    data = s.discount.event_data()
    return [event_draft(inp, new_id("evt"), "subscription.discount_applied", at, inp.actor, **data)]
