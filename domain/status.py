"""Subscription status lifecycle."""

from enum import StrEnum

from domain import errors


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


_S = SubscriptionStatus

ALLOWED_TRANSITIONS: dict[SubscriptionStatus, frozenset[SubscriptionStatus]] = {
    # Trial extension keeps trialing; a trial ending without a payment method pauses.
    _S.TRIALING: frozenset({_S.TRIALING, _S.ACTIVE, _S.PAST_DUE, _S.PAUSED, _S.CANCELED}),
    # The first payment has not succeeded yet.
    _S.INCOMPLETE: frozenset({_S.ACTIVE, _S.INCOMPLETE_EXPIRED, _S.CANCELED}),
    # active -> active is a renewal or plan change.
    _S.ACTIVE: frozenset({_S.ACTIVE, _S.PAST_DUE, _S.PAUSED, _S.CANCELED}),
    # past_due -> past_due is a failed retry; dunning exhaustion leads to canceled or unpaid.
    _S.PAST_DUE: frozenset({_S.ACTIVE, _S.PAST_DUE, _S.CANCELED, _S.UNPAID}),
    _S.PAUSED: frozenset({_S.ACTIVE, _S.CANCELED}),
    _S.UNPAID: frozenset({_S.ACTIVE, _S.CANCELED}),
    _S.CANCELED: frozenset(),
    _S.INCOMPLETE_EXPIRED: frozenset(),
}

_ENTITLED = frozenset({_S.TRIALING, _S.ACTIVE, _S.PAST_DUE})


def ensure_transition(src: SubscriptionStatus, dst: SubscriptionStatus) -> None:
    """Raise `INVALID_TRANSITION` unless `src -> dst` is allowed."""
    source = SubscriptionStatus(src)
    target = SubscriptionStatus(dst)
    if target not in ALLOWED_TRANSITIONS[source]:
        raise errors.INVALID_TRANSITION(
            f"Cannot move a subscription from {source.value} to {target.value}"
        )


def grants_entitlements(status: SubscriptionStatus) -> bool:
    """Whether the customer keeps access in this status (past_due keeps it during dunning)."""
    return SubscriptionStatus(status) in _ENTITLED
