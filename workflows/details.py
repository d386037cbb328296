"""What operators see of a subscription in the Temporal UI: search attributes and details."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio.common import SearchAttributeUpdate, TypedSearchAttributes

from domain.money import format_amount
from domain.status import SubscriptionStatus as S
from workflows import search_attributes as sa
from workflows.messages import CarriedState, SubscriptionInput

_T = "%Y-%m-%d %H:%M"


def next_billing_at(s: CarriedState) -> datetime | None:
    """When money is next asked for: the dunning retry, else the period end."""
    if s.status == S.PAST_DUE:
        return s.dunning.next_retry_at
    if s.status in (S.ACTIVE, S.TRIALING):
        return s.current_period_end
    return None


def search_attribute_updates(s: CarriedState) -> list[SearchAttributeUpdate[Any]]:
    nxt = next_billing_at(s)
    return [
        sa.SUBSCRIPTION_STATUS.value_set(s.status),
        sa.PLAN_ID.value_set(s.plan.plan_id),
        sa.DUNNING_ATTEMPT.value_set(s.dunning.attempts),
        sa.NEXT_BILLING_AT.value_set(nxt) if nxt else sa.NEXT_BILLING_AT.value_unset(),
    ]


def changed_only(
    updates: list[SearchAttributeUpdate[Any]], current: TypedSearchAttributes
) -> list[SearchAttributeUpdate[Any]]:
    """The updates that change something: each upsert rewrites the workflow's visibility
    record on the server, and a plain renewal changes only `NextBillingAt`."""
    return [u for u in updates if current.get(u.key) != u.value]


def current_details(inp: SubscriptionInput, s: CarriedState, now: datetime) -> str:
    """A short Markdown card: status, plan, customer, period, whatever is pending or owed,
    and how it ended. Set at every projection, so it is never older than the read model."""
    plan = s.plan
    price = format_amount(plan.amount, plan.currency)
    every = plan.interval if plan.interval_count == 1 else f"{plan.interval_count} {plan.interval}s"
    lines = [
        f"**{s.status}** on {plan.name} (`{plan.plan_id}`), {price} / {every}",
        f"customer `{inp.customer_id}`" + (f" {inp.customer_email}" if inp.customer_email else ""),
    ]
    if s.current_period_start and s.current_period_end:
        lines.append(f"period {s.current_period_start:{_T}} → {s.current_period_end:{_T}} UTC")
    if s.trial_end and s.status == S.TRIALING:
        lines.append(f"trial ends {s.trial_end:{_T}} UTC")
    if s.pending_change:
        change = s.pending_change
        lines.append(f"pending change to `{change.plan_id}` at {change.effective_at:{_T}} UTC")
    if s.cancel_at_period_end:
        lines.append("cancels at period end")
    if s.open_invoice is not None:
        due = format_amount(s.open_invoice.total, s.open_invoice.currency)
        lines.append(f"open invoice `{s.open_invoice.id}`: {due} due")
    if s.status == S.PAST_DUE:
        retry = s.dunning.next_retry_at
        when = f"{retry:{_T}} UTC" if retry else "after a new payment method"
        lines.append(f"dunning: {s.dunning.attempts} failed attempt(s), next retry {when}")
    if s.last_decline and s.status in (S.PAST_DUE, S.UNPAID, S.INCOMPLETE):
        lines.append(f"last decline: `{s.last_decline}`")
    if s.status == S.CANCELED and s.canceled_at:
        ended = f"canceled {s.canceled_at:{_T}} UTC ({s.cancel_reason or 'unknown reason'})"
        if s.refunded:
            ended += f", refunded {format_amount(s.refunded, plan.currency)}"
        lines.append(ended)
    if inp.test_clock_id:
        lines.append(f"test clock `{inp.test_clock_id}` at {now:{_T}} UTC")
    return "\n\n".join(lines)
