"""Subscription status transitions and entitlements."""

import pytest

from domain.errors import DomainError
from domain.status import (
    ALLOWED_TRANSITIONS,
    SubscriptionStatus,
    ensure_transition,
    grants_entitlements,
)

S = SubscriptionStatus


def test_every_status_has_a_transition_entry() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(S)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (S.TRIALING, S.ACTIVE),
        (S.TRIALING, S.PAST_DUE),
        (S.TRIALING, S.CANCELED),
        (S.INCOMPLETE, S.ACTIVE),
        (S.INCOMPLETE, S.INCOMPLETE_EXPIRED),
        (S.ACTIVE, S.ACTIVE),
        (S.ACTIVE, S.PAST_DUE),
        (S.ACTIVE, S.PAUSED),
        (S.ACTIVE, S.CANCELED),
        (S.PAST_DUE, S.ACTIVE),
        (S.PAST_DUE, S.PAST_DUE),
        (S.PAST_DUE, S.UNPAID),
        (S.PAST_DUE, S.CANCELED),
        (S.PAUSED, S.ACTIVE),
        (S.UNPAID, S.ACTIVE),
        (S.UNPAID, S.CANCELED),
    ],
)
def test_allowed_transitions(src: SubscriptionStatus, dst: SubscriptionStatus) -> None:
    ensure_transition(src, dst)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (S.CANCELED, S.ACTIVE),
        (S.CANCELED, S.CANCELED),
        (S.INCOMPLETE_EXPIRED, S.ACTIVE),
        (S.ACTIVE, S.TRIALING),
        (S.ACTIVE, S.INCOMPLETE),
        (S.ACTIVE, S.UNPAID),
        (S.PAUSED, S.PAST_DUE),
        (S.INCOMPLETE, S.PAST_DUE),
        (S.UNPAID, S.PAST_DUE),
    ],
)
def test_rejected_transitions(src: SubscriptionStatus, dst: SubscriptionStatus) -> None:
    with pytest.raises(DomainError) as info:
        ensure_transition(src, dst)
    assert (info.value.code, info.value.http_status) == ("invalid_transition", 409)


def test_terminal_statuses() -> None:
    assert ALLOWED_TRANSITIONS[S.CANCELED] == frozenset()
    assert ALLOWED_TRANSITIONS[S.INCOMPLETE_EXPIRED] == frozenset()


def test_plain_strings_are_accepted() -> None:
    ensure_transition("active", "past_due")  # type: ignore[arg-type]
    assert grants_entitlements("trialing")  # type: ignore[arg-type]


@pytest.mark.parametrize("status", list(S))
def test_grants_entitlements(status: SubscriptionStatus) -> None:
    assert grants_entitlements(status) == (status in {S.TRIALING, S.ACTIVE, S.PAST_DUE})
