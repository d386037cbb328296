"""The statuses of a subscription.

Which status follows which is decided by the workflow (`workflows/subscription.py`) and
nowhere else; the README's "Billing rules as implemented" describes it.
"""

from enum import StrEnum


class SubscriptionStatus(StrEnum):
    """Lifecycle status of a subscription."""

    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    CANCELED = "canceled"
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    UNPAID = "unpaid"


# The statuses a subscription ends in: its workflow completes and takes no more updates.
TERMINAL: frozenset[SubscriptionStatus] = frozenset(
    {SubscriptionStatus.CANCELED, SubscriptionStatus.INCOMPLETE_EXPIRED}
)
