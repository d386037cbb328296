"""The OpenAPI document as the API really answers: the bearer scheme on every /v1 route, and
every documented error in the one error shape (`api.errors.ErrorResponse`) with examples.

FastAPI documents only what it sees in a route's signature, and for errors only its own
`{"detail": …}` 422. What a route can answer follows from its dependencies (a key: 401 and
429; a role: 403; a path id: 404; a body: 400 and 422; `Idempotency-Key`: 400 and 409;
Temporal: 503), so those are derived from them; the business rules a route checks itself are
listed per operation in `SPECIFIC`. Schemathesis (tests/api/test_schemathesis.py) and
`/docs` read this document.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, get_args

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from api.deps import (
    AdminKey,
    ProductKey,
    ProductOrSupportKey,
    SupportKey,
    current_principal,
    get_temporal,
)
from api.errors import ErrorResponse
from api.idempotency import IdempotencyDep
from domain.errors import DECLARED

BEARER = "bearer"  # the security scheme's name (api.deps.bearer)

# Every error code a route may answer with, and an example message; its status is the one
# declared with the code (domain.errors).
_EXAMPLES: dict[str, str] = {
    "invalid_json": "The request body is not valid JSON",
    "invalid_idempotency_key": "Idempotency-Key must be 1-255 characters",
    "test_clocks_disabled": "Test clocks exist only when RECUR_SANDBOX=true",
    "invalid_signature": "no signature matches",
    "invalid_payload": "Not a Stripe event",
    "unauthorized": "Send an API key as 'Authorization: Bearer <key>'",
    "forbidden": "The support role may not do this",
    "resource_missing": "No subscription with id 'sub_0123'",
    "not_found": "Test clocks exist only when RECUR_SANDBOX=true",
    "idempotency_key_reused": "This Idempotency-Key was used with a different request",
    "idempotency_in_progress": (
        "A request with this Idempotency-Key is still in progress; retry later"
    ),
    "subscription_canceled": "Subscription sub_0123 is canceled",
    "subscription_not_running": "The subscription's workflow has ended",
    "update_rejected": "The subscription's workflow refused the request",
    "already_exists": "Workflow execution already started",
    "no_stripe_customer": "Customer has no Stripe customer",
    "same_plan": "Subscription is already on plan plan_demo_insider",
    "too_many_changes": "At most 3 plan changes are allowed per period",
    "subscription_past_due": "Settle the outstanding invoice before changing plans",
    "subscription_not_changeable": "A paused subscription cannot change plans",
    "period_renewing": "The billing period is renewing; try again",
    "payment_failed": "The change was not applied: the charge was declined",
    "not_pending_cancel": "Subscription has no pending cancellation to undo",
    "subscription_not_pausable": "Only an active subscription can be paused",
    "subscription_cancel_pending": "The subscription cancels at period end",
    "subscription_not_paused": "Subscription is active, not paused",
    "nothing_to_retry": "Subscription is active with no open invoice",
    "subscription_not_trialing": "Subscription is active, not trialing",
    "advance_incomplete": "sub_0123 did not catch up",
    "validation_error": "plan_id: Field required",
    "invalid_characters": "name: control characters (NUL, CR, LF, ...) are not allowed",
    "time_out_of_range": (
        "frozen_time: times must be from 1970-01-01T00:00:00+00:00 and before "
        "2200-01-01T00:00:00+00:00"
    ),
    "duplicate_features": "features: features are repeated: archive",
    "card_declined": "The card was declined: Your card was declined.",
    "payment_method_invalid": (
        "Stripe refused the request (resource_missing): No such PaymentMethod"
    ),
    "stripe_request_invalid": "Stripe refused the request (parameter_invalid): ...",
    "invalid_billing_cycle_anchor": (
        "billing_cycle_anchor must be between now and one period ahead"
    ),
    "currency_mismatch": "Cannot change from a usd plan to a eur plan",
    "interval_mismatch": "All items bill on one period: plan_a every 1 month, plan_b every 1 year",
    "invalid_items": "Plan plan_demo_insider is listed twice",
    "invalid_amount": "A balance transaction moves a non-zero amount",
    "insufficient_balance": "The balance holds 500; a debit of 800 would take it below zero",
    "same_items": "The subscription already has exactly these items",
    "invalid_refund": "A prorated refund applies only to an immediate cancel",
    "invalid_resumes_at": "resumes_at must be in the future",
    "invalid_trial_end": "trial_end must be a UTC time after the current trial end",
    "invalid_frozen_time": "frozen_time must not be before the clock's current time",
    "webhook_target_not_allowed": "url: webhooks may not target a loopback address",
    "coupon_not_found": "No coupon with id 'coupon_0123'",
    "promotion_code_not_found": "No promotion code 'LAUNCH25'",
    "coupon_expired": "Coupon coupon_0123 was deleted",
    "coupon_exhausted": "Coupon coupon_0123 has been redeemed 100 times",
    "promotion_code_inactive": "Promotion code LAUNCH25 was deactivated",
    "no_discount": "The subscription has no discount",
    "coupon_not_applicable": "Coupon coupon_0123 applies to none of the subscription's plans",
    "promotion_code_not_eligible": "Promotion code LAUNCH25 belongs to another customer",
    "meter_exists": "A meter with id 'meter_api_calls' exists",
    "unknown_customer": "No customer with id 'cus_0123'",
    "no_metered_subscription": "No subscription of customer 'cus_0123' meters 'api_call'",
    "period_closed": "The period of 2027-01-31T23:00:00+00:00 is already invoiced",
    "timestamp_in_future": "timestamp 2027-01-01T00:10:00+00:00 is more than 5 minutes after now",
    "invalid_property": "properties.tokens must be a number",
    "too_many_requests": "Too many failed authentications from this address",
    "temporal_unavailable": "Temporal is not reachable right now",
    "workflow_unavailable": "sub_0123's workflow did not answer in time",
    "stripe_unavailable": "Stripe could not be reached; try again later",
}
CODES: dict[str, tuple[int, str]] = {
    code: (DECLARED[code].http_status, example) for code, example in _EXAMPLES.items()
}

_LIFECYCLE = (
    "invalid_idempotency_key",
    "subscription_canceled",
    "subscription_not_running",
    "update_rejected",
    "workflow_unavailable",
)

# What redeeming a coupon or promotion code can answer.
_REDEEMING = (
    "coupon_not_found",
    "promotion_code_not_found",
    "coupon_expired",
    "coupon_exhausted",
    "promotion_code_inactive",
    "coupon_not_applicable",
    "promotion_code_not_eligible",
)

# What an operation checks itself, beyond what its dependencies imply.
SPECIFIC: dict[tuple[str, str], tuple[str, ...]] = {
    ("post", "/v1/plans"): ("duplicate_features", "resource_missing"),
    ("post", "/v1/meters"): ("meter_exists",),
    # A single event's rejection is its answer; a batch lists each event's in `rejected`.
    # The single event's route authenticates and reads its body by hand (no dependencies).
    ("post", "/v1/usage_events"): (
        "unauthorized",
        "too_many_requests",
        "forbidden",
        "invalid_json",
        "validation_error",
        "invalid_characters",
        "unknown_customer",
        "no_metered_subscription",
        "period_closed",
        "timestamp_in_future",
        "invalid_property",
        "time_out_of_range",
    ),
    ("post", "/v1/customers"): (
        "card_declined",
        "payment_method_invalid",
        "stripe_request_invalid",
        "stripe_unavailable",
    ),
    ("post", "/v1/customers/{customer_id}/payment_method"): (
        "no_stripe_customer",
        "card_declined",
        "payment_method_invalid",
        "stripe_unavailable",
    ),
    ("post", "/v1/customers/{customer_id}/balance_transactions"): (
        "invalid_amount",
        "insufficient_balance",
    ),
    ("post", "/v1/subscriptions"): (
        *_REDEEMING,
        "resource_missing",
        "invalid_items",
        "currency_mismatch",
        "interval_mismatch",
        "test_clocks_disabled",
        "invalid_billing_cycle_anchor",
        "time_out_of_range",
        "already_exists",
        "workflow_unavailable",
    ),
    ("post", "/v1/subscriptions/{subscription_id}/change_plan"): (
        *_LIFECYCLE,
        "same_plan",
        "too_many_changes",
        "subscription_past_due",
        "subscription_not_changeable",
        "period_renewing",
        "payment_failed",
        "currency_mismatch",
        "invalid_items",
        "interval_mismatch",
    ),
    ("post", "/v1/subscriptions/{subscription_id}/update_items"): (
        *_LIFECYCLE,
        "invalid_items",
        "same_items",
        "too_many_changes",
        "subscription_past_due",
        "subscription_not_changeable",
        "period_renewing",
        "payment_failed",
        "currency_mismatch",
        "interval_mismatch",
    ),
    ("post", "/v1/subscriptions/{subscription_id}/cancel"): (*_LIFECYCLE, "invalid_refund"),
    ("post", "/v1/subscriptions/{subscription_id}/reactivate"): (
        *_LIFECYCLE,
        "not_pending_cancel",
    ),
    ("post", "/v1/subscriptions/{subscription_id}/pause"): (
        *_LIFECYCLE,
        "subscription_not_pausable",
        "subscription_cancel_pending",
        "invalid_resumes_at",
        "time_out_of_range",
    ),
    ("post", "/v1/subscriptions/{subscription_id}/resume"): (
        *_LIFECYCLE,
        "subscription_not_paused",
    ),
    ("post", "/v1/subscriptions/{subscription_id}/retry_payment"): (
        *_LIFECYCLE,
        "nothing_to_retry",
    ),
    ("post", "/v1/subscriptions/{subscription_id}/extend_trial"): (
        *_LIFECYCLE,
        "subscription_not_trialing",
        "invalid_trial_end",
        "time_out_of_range",
    ),
    ("post", "/v1/test_clocks"): ("not_found", "time_out_of_range"),
    ("get", "/v1/test_clocks/{clock_id}"): ("not_found",),
    ("post", "/v1/test_clocks/{clock_id}/advance"): (
        "not_found",
        "invalid_frozen_time",
        "advance_incomplete",
        "time_out_of_range",
    ),
    ("post", "/v1/webhook_endpoints"): ("webhook_target_not_allowed",),
    ("post", "/v1/coupons"): ("resource_missing", "already_exists"),
    ("post", "/v1/subscriptions/{subscription_id}/discount"): (*_LIFECYCLE, *_REDEEMING),
    ("delete", "/v1/subscriptions/{subscription_id}/discount"): (*_LIFECYCLE, "no_discount"),
    ("get", "/v1/coupons/{coupon_id}"): ("coupon_not_found",),
    ("delete", "/v1/coupons/{coupon_id}"): ("coupon_not_found",),
    ("post", "/v1/promotion_codes"): (
        "coupon_not_found",
        "coupon_expired",
        "resource_missing",
        "already_exists",
    ),
    ("get", "/v1/promotion_codes/{code_id}"): ("promotion_code_not_found",),
    ("post", "/v1/promotion_codes/{code_id}/deactivate"): ("promotion_code_not_found",),
    # The hot path authenticates and reads its parameters by hand (no dependencies).
    ("get", "/v1/entitlements/check"): ("unauthorized", "too_many_requests", "validation_error"),
    ("post", "/webhooks/stripe"): ("invalid_signature", "invalid_payload"),
}

_ROLE_CHECKS = {get_args(t)[1].dependency for t in (AdminKey, ProductKey, SupportKey)}
_ROLE_CHECKS.add(get_args(ProductOrSupportKey)[1].dependency)
_IDEMPOTENCY = get_args(IdempotencyDep)[1].dependency

_DESCRIPTIONS = {
    400: "Malformed request (not JSON, a bad header)",
    401: "No API key, or an unknown or revoked one",
    402: "The card was declined",
    403: "The key's role may not do this",
    404: "An id in the path or the body names nothing",
    409: "The resource's state forbids the request, or an `Idempotency-Key` conflict",
    422: "A value is invalid",
    429: "Too many failed authentications from this address (see `Retry-After`)",
    503: "Temporal or Stripe did not answer; the request may be retried",
}


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document as `app.openapi()` (and so at /openapi.json)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(FastAPI.openapi(app), app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(schema: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(_error_schemas())
    for path, method, dependant in _operations(app):
        operation = schema["paths"][path][method]
        codes = _codes(path, method, dependant)
        missing = _missing_message(dependant.path_params)
        operation["responses"] = _responses(operation.get("responses", {}), codes, missing)
        if path.startswith("/v1/"):
            operation["security"] = [{BEARER: []}]
    return schema


def _error_schemas() -> dict[str, Any]:
    """ErrorResponse and ErrorBody, with refs pointing at the document's components."""
    body = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    defs: dict[str, Any] = body.pop("$defs", {})
    return {**defs, "ErrorResponse": body}


def _operations(app: FastAPI) -> Iterator[tuple[str, str, Dependant]]:
    """(path, method, dependant) of each documented operation. Routes of included routers
    are reached through their contexts (FastAPI >= 0.165)."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.include_in_schema:
            dependant: Dependant = context.dependant
            for method in sorted(route.methods or ()):
                yield str(context.path_format), method.lower(), dependant


def _codes(path: str, method: str, dependant: Dependant) -> list[str]:
    calls = set(_calls(dependant))
    codes: list[str] = []
    if current_principal in calls:
        codes += ["unauthorized", "too_many_requests"]
    if calls & _ROLE_CHECKS:
        codes.append("forbidden")
    if dependant.path_params:
        codes.append("resource_missing")
    if dependant.body_params:
        codes += ["invalid_json", "validation_error", "invalid_characters"]
    elif dependant.query_params or dependant.path_params:
        codes += ["validation_error", "invalid_characters"]
    if _IDEMPOTENCY in calls:
        codes += ["invalid_idempotency_key", "idempotency_key_reused", "idempotency_in_progress"]
    if get_temporal in calls:
        codes.append("temporal_unavailable")
    codes += SPECIFIC.get((method, path), ())
    return list(dict.fromkeys(codes))


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


# What each path parameter names, and its ids' prefix (api.ids.new_id).
_KINDS = {
    "plan_id": ("plan", "plan"),
    "key_id": ("API key", "key"),
    "customer_id": ("customer", "cus"),
    "subscription_id": ("subscription", "sub"),
    "invoice_id": ("invoice", "in"),
    "clock_id": ("test clock", "clock"),
    "endpoint_id": ("webhook endpoint", "we"),
    "coupon_id": ("coupon", "coupon"),
    "code_id": ("promotion code", "promo"),
}


def _missing_message(path_params: list[Any]) -> str:
    """The 404 example of this operation: the last id in its path, or the body's first id."""
    if not path_params:
        return "No customer with id 'cus_0123'"
    name = path_params[-1].name
    kind, prefix = _KINDS.get(name, (name.removesuffix("_id"), "id"))
    return f"No {kind} with id '{prefix}_0123'"


def _responses(documented: dict[str, Any], codes: list[str], missing: str) -> dict[str, Any]:
    """The success responses as FastAPI built them, then one entry per error status with an
    example for each code (FastAPI's own 422 is replaced)."""
    out = {status: r for status, r in documented.items() if not status.startswith(("4", "5"))}
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(CODES[code][0], []).append(code)
    for status in sorted(by_status):
        examples = {
            code: {
                "summary": code,
                "value": {
                    "error": {
                        "code": code,
                        "message": missing if code == "resource_missing" else CODES[code][1],
                    }
                },
            }
            for code in by_status[status]
        }
        out[str(status)] = {
            "description": _DESCRIPTIONS[status],
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/ErrorResponse"},
                    "examples": examples,
                }
            },
        }
    return out
