"""Dunning: which payment failures to retry, and when."""

from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain._time import as_utc

# Declines that retrying the same payment method cannot fix: the card is gone, blocked,
# invalid or unsupported, so only the customer can resolve them (new card or details).
# Deliberately absent (soft, worth retrying): do_not_honor, generic_decline,
# insufficient_funds, processing_error, try_again_later, issuer_not_available.
# Also absent: authentication_required, which needs the customer to authenticate and is
# handled by a customer-action flow rather than treated as a dead card.
HARD_DECLINE_CODES: frozenset[str] = frozenset(
    {
        "card_not_supported",
        "currency_not_supported",
        "expired_card",
        "fraudulent",
        "incorrect_number",
        "invalid_account",
        "invalid_number",
        "lost_card",
        "merchant_blacklist",
        "new_account_information_available",
        "pickup_card",
        "restricted_card",
        "revocation_of_all_authorizations",
        "revocation_of_authorization",
        "security_violation",
        "service_not_allowed",
        "stolen_card",
        "stop_payment_order",
        "transaction_not_allowed",
        # CVC and expiry mismatches recur on every retry with the same stored details.
        "incorrect_cvc",
        "invalid_cvc",
        "invalid_expiry_month",
        "invalid_expiry_year",
    }
)

_DEFAULT_RETRY_SCHEDULE_HOURS = (24, 48, 96, 144, 192, 240, 288, 336)


def is_hard_decline(decline_code: str | None) -> bool:
    """Whether a processor decline code means retries are pointless."""
    if not decline_code:
        return False
    return decline_code.strip().lower() in HARD_DECLINE_CODES


class ExhaustedAction(StrEnum):
    """What happens to the subscription when all retries have failed."""

    CANCEL = "cancel"
    UNPAID = "unpaid"


class DunningPolicy(BaseModel):
    """Retry schedule and outcome for failed renewal payments."""

    model_config = ConfigDict(frozen=True)

    # Offsets in hours from the FIRST failure, not from the previous retry.
    retry_schedule_hours: list[int] = Field(
        default_factory=lambda: list(_DEFAULT_RETRY_SCHEDULE_HOURS)
    )
    exhausted_action: ExhaustedAction = ExhaustedAction.CANCEL

    @field_validator("retry_schedule_hours")
    @classmethod
    def _check_schedule(cls, value: list[int]) -> list[int]:
        if any(hours <= 0 for hours in value):
            raise ValueError("retry offsets must be positive")
        if any(later <= earlier for earlier, later in pairwise(value)):
            raise ValueError("retry offsets must be strictly increasing")
        return value


def next_retry_at(
    first_failure_at: datetime, retries_done: int, policy: DunningPolicy
) -> datetime | None:
    """When to make the next retry, or None once the schedule is exhausted."""
    first = as_utc(first_failure_at, "first_failure_at")
    if retries_done < 0:
        raise ValueError(f"retries_done must be >= 0, got {retries_done}")
    if retries_done >= len(policy.retry_schedule_hours):
        return None
    return first + timedelta(hours=policy.retry_schedule_hours[retries_done])
