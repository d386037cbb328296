"""Dunning retry schedule and decline classification."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from domain.dunning import (
    HARD_DECLINE_CODES,
    DunningPolicy,
    ExhaustedAction,
    is_hard_decline,
    next_retry_at,
)

FIRST_FAILURE = datetime(2024, 3, 10, 6, 30, tzinfo=UTC)


def test_default_schedule_has_eight_retries_within_fourteen_days() -> None:
    policy = DunningPolicy()
    hours = policy.retry_schedule_hours
    assert len(hours) == 8
    assert hours == sorted(set(hours))
    assert hours[0] > 0
    assert hours[-1] <= 14 * 24
    assert policy.exhausted_action is ExhaustedAction.CANCEL


def test_retries_are_offsets_from_the_first_failure() -> None:
    policy = DunningPolicy()
    times = [next_retry_at(FIRST_FAILURE, n, policy) for n in range(8)]
    assert times[0] == FIRST_FAILURE + timedelta(days=1)
    assert times[2] == FIRST_FAILURE + timedelta(hours=96)
    assert times[-1] == FIRST_FAILURE + timedelta(days=14)
    assert all(t is not None and t > FIRST_FAILURE for t in times)


def test_schedule_exhaustion_returns_none() -> None:
    policy = DunningPolicy()
    assert next_retry_at(FIRST_FAILURE, 8, policy) is None
    assert next_retry_at(FIRST_FAILURE, 50, policy) is None
    assert next_retry_at(FIRST_FAILURE, 0, DunningPolicy(retry_schedule_hours=[])) is None


def test_custom_policy() -> None:
    policy = DunningPolicy(retry_schedule_hours=[1, 5], exhausted_action="unpaid")
    assert policy.exhausted_action is ExhaustedAction.UNPAID
    assert next_retry_at(FIRST_FAILURE, 1, policy) == FIRST_FAILURE + timedelta(hours=5)
    assert next_retry_at(FIRST_FAILURE, 2, policy) is None


def test_default_schedule_is_not_shared_between_instances() -> None:
    first, second = DunningPolicy(), DunningPolicy()
    first.retry_schedule_hours.append(999)
    assert len(second.retry_schedule_hours) == 8


@pytest.mark.parametrize("hours", [[24, 24], [48, 24], [0, 24], [-1], [24, 48, 47]])
def test_schedule_must_be_positive_and_strictly_increasing(hours: list[int]) -> None:
    with pytest.raises(ValidationError):
        DunningPolicy(retry_schedule_hours=hours)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        next_retry_at(datetime(2024, 3, 10), 0, DunningPolicy())
    with pytest.raises(ValueError):
        next_retry_at(FIRST_FAILURE, -1, DunningPolicy())


@pytest.mark.parametrize(
    "code",
    [
        "stolen_card",
        "lost_card",
        "pickup_card",
        "fraudulent",
        "expired_card",
        "incorrect_number",
        "invalid_account",
        "restricted_card",
        "card_not_supported",
        "currency_not_supported",
        "new_account_information_available",
        "EXPIRED_CARD",
        " stolen_card ",
    ],
)
def test_hard_declines(code: str) -> None:
    assert is_hard_decline(code)


@pytest.mark.parametrize(
    "code",
    [
        None,
        "",
        "do_not_honor",
        "generic_decline",
        "insufficient_funds",
        "processing_error",
        "try_again_later",
        "authentication_required",
        "something_new",
    ],
)
def test_soft_declines(code: str | None) -> None:
    assert not is_hard_decline(code)


def test_hard_decline_codes_are_normalised() -> None:
    assert all(code == code.strip().lower() for code in HARD_DECLINE_CODES)
    assert "do_not_honor" not in HARD_DECLINE_CODES
