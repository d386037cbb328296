"""Subscription statuses: plain strings compare equal to them, two of them are terminal."""

from domain.status import TERMINAL, SubscriptionStatus

S = SubscriptionStatus


def test_statuses_are_their_strings() -> None:
    assert [str(s) for s in S] == [
        "trialing",
        "active",
        "past_due",
        "paused",
        "canceled",
        "incomplete",
        "incomplete_expired",
        "unpaid",
    ]
    assert S("past_due") is S.PAST_DUE
    assert "canceled" in TERMINAL


def test_terminal_statuses() -> None:
    assert {S.CANCELED, S.INCOMPLETE_EXPIRED} == TERMINAL
