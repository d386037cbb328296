"""Typed business errors: each code is declared once here, with the HTTP status the API
answers it with, and raised by calling its declaration (`SAME_PLAN("…")`).

The API answers a `DomainError` as `{"error": {"code", "message"}}` with its status
(`api.errors`); a workflow validator or handler raises the same error as a non-retryable
application error carrying both (`workflows.errors.rejected`), which the API converts back.
`api.openapi` documents every declared code with the status declared here."""

from __future__ import annotations

from dataclasses import dataclass


class DomainError(Exception):
    """A business-rule violation; `code` is stable and safe to show to API clients."""

    def __init__(
        self,
        code: str,
        message: str,
        http_status: int = 409,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.headers = headers  # sent with the answer (`Retry-After`)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"DomainError({self.code!r}, {self.message!r}, {self.http_status!r})"

    def __reduce__(
        self,
    ) -> tuple[type[DomainError], tuple[str, str, int, dict[str, str] | None]]:
        # Default Exception pickling replays only `args` (the message), which would
        # break the constructor when errors cross process boundaries.
        return (type(self), (self.code, self.message, self.http_status, self.headers))


@dataclass(frozen=True)
class ErrorCode:
    """A code and its HTTP status; calling it makes the error to raise."""

    code: str
    http_status: int

    def __call__(self, message: str, *, headers: dict[str, str] | None = None) -> DomainError:
        return DomainError(self.code, message, self.http_status, headers)


DECLARED: dict[str, ErrorCode] = {}


def _declare(code: str, http_status: int) -> ErrorCode:
    assert code not in DECLARED, f"{code} is declared twice"
    DECLARED[code] = declared = ErrorCode(code, http_status)
    return declared


# Requests the API cannot read.
INVALID_JSON = _declare("invalid_json", 400)
INVALID_IDEMPOTENCY_KEY = _declare("invalid_idempotency_key", 400)
TEST_CLOCKS_DISABLED = _declare("test_clocks_disabled", 400)
INVALID_SIGNATURE = _declare("invalid_signature", 400)
INVALID_PAYLOAD = _declare("invalid_payload", 400)
VALIDATION_ERROR = _declare("validation_error", 422)
INVALID_CHARACTERS = _declare("invalid_characters", 422)
TIME_OUT_OF_RANGE = _declare("time_out_of_range", 422)
DUPLICATE_FEATURES = _declare("duplicate_features", 422)

# Who is calling.
UNAUTHORIZED = _declare("unauthorized", 401)
FORBIDDEN = _declare("forbidden", 403)
TOO_MANY_REQUESTS = _declare("too_many_requests", 429)

# What the request names.
RESOURCE_MISSING = _declare("resource_missing", 404)
NOT_FOUND = _declare("not_found", 404)

# Idempotency-Key conflicts.
IDEMPOTENCY_KEY_REUSED = _declare("idempotency_key_reused", 409)
IDEMPOTENCY_IN_PROGRESS = _declare("idempotency_in_progress", 409)

# A subscription's state forbids the request (workflow validators and the API alike).
SUBSCRIPTION_CANCELED = _declare("subscription_canceled", 409)
SUBSCRIPTION_NOT_RUNNING = _declare("subscription_not_running", 409)
UPDATE_REJECTED = _declare("update_rejected", 409)
ALREADY_EXISTS = _declare("already_exists", 409)
NO_STRIPE_CUSTOMER = _declare("no_stripe_customer", 409)
SAME_PLAN = _declare("same_plan", 409)
TOO_MANY_CHANGES = _declare("too_many_changes", 409)
SUBSCRIPTION_PAST_DUE = _declare("subscription_past_due", 409)
SUBSCRIPTION_NOT_CHANGEABLE = _declare("subscription_not_changeable", 409)
PERIOD_RENEWING = _declare("period_renewing", 409)
PAYMENT_FAILED = _declare("payment_failed", 409)
NOT_PENDING_CANCEL = _declare("not_pending_cancel", 409)
SUBSCRIPTION_NOT_PAUSABLE = _declare("subscription_not_pausable", 409)
SUBSCRIPTION_CANCEL_PENDING = _declare("subscription_cancel_pending", 409)
SUBSCRIPTION_NOT_PAUSED = _declare("subscription_not_paused", 409)
NOTHING_TO_RETRY = _declare("nothing_to_retry", 409)
SUBSCRIPTION_NOT_TRIALING = _declare("subscription_not_trialing", 409)
ADVANCE_INCOMPLETE = _declare("advance_incomplete", 409)
NOT_ON_TEST_CLOCK = _declare("not_on_test_clock", 409)
SAME_ITEMS = _declare("same_items", 409)
INSUFFICIENT_BALANCE = _declare("insufficient_balance", 409)

# Coupons and promotion codes (DESIGN.md, "Coupons and promotion codes").
COUPON_NOT_FOUND = _declare("coupon_not_found", 404)
PROMOTION_CODE_NOT_FOUND = _declare("promotion_code_not_found", 404)
COUPON_EXPIRED = _declare("coupon_expired", 409)
COUPON_EXHAUSTED = _declare("coupon_exhausted", 409)
PROMOTION_CODE_INACTIVE = _declare("promotion_code_inactive", 409)
NO_DISCOUNT = _declare("no_discount", 409)
COUPON_NOT_APPLICABLE = _declare("coupon_not_applicable", 422)
PROMOTION_CODE_NOT_ELIGIBLE = _declare("promotion_code_not_eligible", 422)

# Values the rules refuse.
INVALID_BILLING_CYCLE_ANCHOR = _declare("invalid_billing_cycle_anchor", 422)
CURRENCY_MISMATCH = _declare("currency_mismatch", 422)
INTERVAL_MISMATCH = _declare("interval_mismatch", 422)
INVALID_ITEMS = _declare("invalid_items", 422)
INVALID_AMOUNT = _declare("invalid_amount", 422)
INVALID_CURRENCY = _declare("invalid_currency", 422)
INVALID_REFUND = _declare("invalid_refund", 422)
INVALID_RESUMES_AT = _declare("invalid_resumes_at", 422)
INVALID_TRIAL_END = _declare("invalid_trial_end", 422)
INVALID_FROZEN_TIME = _declare("invalid_frozen_time", 422)
WEBHOOK_TARGET_NOT_ALLOWED = _declare("webhook_target_not_allowed", 422)

# Usage: meters and usage events (a batch lists an event's refusal in its answer instead).
METER_EXISTS = _declare("meter_exists", 409)
UNKNOWN_CUSTOMER = _declare("unknown_customer", 404)
NO_METERED_SUBSCRIPTION = _declare("no_metered_subscription", 409)
PERIOD_CLOSED = _declare("period_closed", 409)
TIMESTAMP_IN_FUTURE = _declare("timestamp_in_future", 422)
INVALID_PROPERTY = _declare("invalid_property", 422)

# Stripe's answers to a synchronous call.
CARD_DECLINED = _declare("card_declined", 402)
PAYMENT_METHOD_INVALID = _declare("payment_method_invalid", 422)
STRIPE_REQUEST_INVALID = _declare("stripe_request_invalid", 422)

# A dependency did not answer; the request may be retried.
TEMPORAL_UNAVAILABLE = _declare("temporal_unavailable", 503)
WORKFLOW_UNAVAILABLE = _declare("workflow_unavailable", 503)
STRIPE_UNAVAILABLE = _declare("stripe_unavailable", 503)
