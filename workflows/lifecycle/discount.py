"""A subscription's discount: applied at creation or later, replaced, removed, ended.

The discount keeps its coupon's terms as redeemed (`domain.discounts.Discount`), so a
coupon deleted later does not alter it. Invoices take it in `Subscription.invoice`; a
repeating discount ends by a step of its own at its `end` (on a test clock, at that clock
time), a `once` discount with the invoice it is used on. Runs ask for the DISCOUNTS patch
only once they hold a discount, which no run recorded before it ever did.
"""

from __future__ import annotations

from datetime import datetime

from domain import errors
from domain.contracts import EventDraft
from domain.discounts import grant_discount
from domain.status import TERMINAL
from workflows.errors import rejected
from workflows.lifecycle.context import Subscription
from workflows.messages import ActorRequest, SetDiscountRequest


def validate_set_discount(sub: Subscription) -> None:
    if sub.status in TERMINAL:
        raise rejected(errors.SUBSCRIPTION_CANCELED(f"The subscription is {sub.status.value}"))


async def set_discount(sub: Subscription, req: SetDiscountRequest) -> None:
    """Hold the new discount from now; one held before is removed (replaced)."""
    s = sub.state
    events: list[EventDraft] = []
    if s.discount is not None:
        events.append(
            sub.event(
                "subscription.discount_removed",
                actor=req.actor,
                replaced=True,
                **s.discount.event_data(),
            )
        )
    s.discount = grant_discount(req.grant, sub.clock.now())
    events.append(
        sub.event("subscription.discount_applied", actor=req.actor, **s.discount.event_data())
    )
    sub.dirty = True  # its end may be the next thing due
    await sub.sync(events)


def validate_remove_discount(sub: Subscription) -> None:
    validate_set_discount(sub)
    if sub.state.discount is None:
        raise rejected(errors.NO_DISCOUNT("The subscription has no discount"))


async def remove_discount(sub: Subscription, req: ActorRequest) -> None:
    s = sub.state
    assert s.discount is not None
    data = s.discount.event_data()
    s.discount = None
    sub.dirty = True
    await sub.sync([sub.event("subscription.discount_removed", actor=req.actor, **data)])


def discount_end(sub: Subscription) -> datetime | None:
    """When the held discount ends by itself (a repeating one), else None."""
    discount = sub.state.discount
    return discount.end if discount is not None else None


async def end_discount(sub: Subscription) -> None:
    """A repeating discount has run its months: the subscription no longer holds it."""
    s = sub.state
    assert s.discount is not None
    data = s.discount.event_data()
    s.discount = None
    await sub.sync([sub.event("subscription.discount_ended", None, **data)])
