"""Bad input is a 4xx with a code, never a 500, and never wedges anything (issue #17, findings
4 and 5): repeated plan features, NUL and other control characters in ids, query parameters
and JSON strings, CR/LF in names that end up in email headers, times out of range."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import stripe

from db.engine import get_engine, transaction
from db.models import Plan
from tests.conftest import Stack
from tests.helpers import (
    entitled,
    get_sub,
    make_clock,
    make_customer,
    make_plan,
    ok,
)


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    body = ok(response, status)
    assert body["error"]["code"] == code, body
    return body["error"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- finding 4: repeated features


async def test_a_plan_with_a_repeated_feature_is_refused(app_client: httpx.AsyncClient) -> None:
    body = {"name": "Dup", "amount": 500, "currency": "usd", "interval": "month"}
    response = await app_client.post("/v1/plans", json={**body, "features": ["a", "b", "a"]})
    error = _error(response, 422, "duplicate_features")
    assert "'a'" in error["message"] and "features" in error["message"]


async def _stored_plan_with_repeats(stack: Stack, feature: str) -> str:
    """A plan as an older version (before the API refused repeats) could have stored it."""
    plan_id = f"plan_dup_{uuid.uuid4().hex[:10]}"
    engine = get_engine(stack.settings.effective_database_url)
    async with transaction(engine) as session:
        session.add(
            Plan(
                id=plan_id,
                name="Legacy tier",
                amount=700,
                currency="usd",
                interval="month",
                features=[feature, "extra", feature],
                created_at=datetime.now(UTC),
            )
        )
    return plan_id


@pytest.mark.parametrize("trial_days", [7, 0], ids=["trial", "charged-at-once"])
async def test_a_stored_plan_with_a_repeated_feature_does_not_wedge_its_subscription(
    app_client: httpx.AsyncClient, stack: Stack, trial_days: int
) -> None:
    feature = f"dup_{uuid.uuid4().hex[:8]}"
    plan_id = await _stored_plan_with_repeats(stack, feature)
    customer = await make_customer(app_client)
    body = {"customer_id": customer["id"], "plan_id": plan_id, "trial_days": trial_days}
    # Before the fix: a 500 with a trial; without one a charge whose projection never lands
    # (the create then waits for ever), so the wait is bounded.
    async with asyncio.timeout(60):
        created = ok(await app_client.post("/v1/subscriptions", json=body), 201)
        sub = await get_sub(app_client, created["id"])
    assert sub["status"] == ("trialing" if trial_days else "active")
    assert await entitled(app_client, customer["id"], feature)
    rows = ok(await app_client.get(f"/v1/customers/{customer['id']}/entitlements"))
    assert sorted(r["feature"] for r in rows) == sorted([feature, "extra"])
    # And it still takes updates (they timed out, the workflow stuck on its projection).
    async with asyncio.timeout(60):
        canceled = ok(
            await app_client.post(
                f"/v1/subscriptions/{created['id']}/cancel", json={"at_period_end": False}
            )
        )
    assert canceled["status"] == "canceled"


# ------------------------------------------------------- finding 5: control characters


@pytest.mark.parametrize(
    "path",
    [
        "/v1/plans/plan_%00x",
        "/v1/customers/cus_%00x",
        "/v1/customers/cus_%00x/entitlements",
        "/v1/subscriptions/sub_%00x",
        "/v1/invoices/in_%00x",
        "/v1/test_clocks/clock_%00x",
        "/v1/webhook_endpoints/we_%00x",
        "/v1/subscriptions?customer_id=cus_%00x",
        "/v1/subscriptions?plan_id=%00",
        "/v1/invoices?subscription_id=sub_%00x",
        "/v1/events?customer_id=cus_%00x",
        "/v1/entitlements/check?customer_id=cus_%00x&feature=posts",
        "/v1/entitlements/check?customer_id=cus_x&feature=a%0Ab",
    ],
)
async def test_a_nul_or_control_character_in_an_id_or_query_is_a_422(
    app_client: httpx.AsyncClient, path: str
) -> None:
    _error(await app_client.get(path), 422, "invalid_characters")


async def test_a_nul_in_a_posted_id_is_a_422_before_anything_happens(
    app_client: httpx.AsyncClient,
) -> None:
    body = {"customer_id": "cus_\x00x", "plan_id": "plan_x"}
    _error(await app_client.post("/v1/subscriptions", json=body), 422, "invalid_characters")
    response = await app_client.post(
        "/v1/subscriptions/sub_x%00/cancel", json={"at_period_end": True}
    )
    _error(response, 422, "invalid_characters")


async def test_a_control_character_in_the_idempotency_key_is_a_422(
    app_client: httpx.AsyncClient,
) -> None:
    body = {"name": "Tier", "amount": 100, "currency": "usd", "interval": "month"}
    response = await app_client.post(
        "/v1/plans", json=body, headers={"Idempotency-Key": "key\x01one"}
    )
    _error(response, 422, "invalid_characters")


async def test_a_nul_in_a_new_customer_is_refused_before_stripe_is_called(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    email = f"nul-{uuid.uuid4().hex[:8]}@example.com"
    response = await app_client.post("/v1/customers", json={"email": email, "name": "A\x00Fan"})
    error = _error(response, 422, "invalid_characters")
    assert error["message"].startswith("name:")
    client = stripe.StripeClient(
        stack.settings.stripe_api_key,
        base_addresses={"api": stack.settings.effective_stripe_api_base},
        max_network_retries=0,
    )
    made = client.v1.customers.list({"email": email, "limit": 10})
    assert made.data == [], "no Stripe customer was made"
    # The same body with a clean name is made in Stripe (the query above does find one).
    ok(await app_client.post("/v1/customers", json={"email": email, "name": "A Fan"}), 201)
    assert len(client.v1.customers.list({"email": email, "limit": 10}).data) == 1


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", "Gold\r\nBcc: everyone@example.com"),
        ("name", "Gold\nTier"),
        ("name", "Gold\u2028Tier"),
        ("creator_id", "creator\x00"),
    ],
)
async def test_plan_text_with_line_breaks_or_nul_is_refused(
    app_client: httpx.AsyncClient, field: str, value: str
) -> None:
    body = {"name": "Gold", "amount": 100, "currency": "usd", "interval": "month", field: value}
    error = _error(await app_client.post("/v1/plans", json=body), 422, "invalid_characters")
    assert error["message"].startswith(f"{field}:")


async def test_a_tab_and_unicode_text_are_still_accepted(app_client: httpx.AsyncClient) -> None:
    plan = await make_plan(app_client, name="Gold\tTier — Ünïcode ✓")
    assert plan["name"] == "Gold\tTier — Ünïcode ✓"


# -------------------------------------------------------------- finding 5: times out of range


@pytest.mark.parametrize(
    "when", ["9999-12-31T00:00:00Z", "2200-01-01T00:00:00Z", "1900-01-01T00:00:00Z"]
)
async def test_a_test_clock_out_of_range_is_refused(
    app_client: httpx.AsyncClient, when: str
) -> None:
    response = await app_client.post("/v1/test_clocks", json={"frozen_time": when})
    _error(response, 422, "time_out_of_range")


async def test_a_test_clock_cannot_be_advanced_out_of_range(
    app_client: httpx.AsyncClient,
) -> None:
    clock = await make_clock(app_client, datetime(2031, 1, 1, tzinfo=UTC))
    response = await app_client.post(
        f"/v1/test_clocks/{clock['id']}/advance", json={"frozen_time": "9999-01-01T00:00:00Z"}
    )
    _error(response, 422, "time_out_of_range")
    later = ok(
        await app_client.post(
            f"/v1/test_clocks/{clock['id']}/advance", json={"frozen_time": "2199-12-31T00:00:00Z"}
        )
    )
    assert later["frozen_time"].startswith("2199-12-31")


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/subscriptions/sub_missing/extend_trial", {"trial_end": "9999-01-01T00:00:00Z"}),
        ("/v1/subscriptions/sub_missing/pause", {"resumes_at": "9000-01-01T00:00:00Z"}),
        (
            "/v1/subscriptions",
            {
                "customer_id": "cus_missing",
                "plan_id": "plan_missing",
                "billing_cycle_anchor": "9999-12-31T23:59:59Z",
            },
        ),
    ],
)
async def test_every_time_the_api_takes_is_bounded(
    app_client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    _error(await app_client.post(path, json=body), 422, "time_out_of_range")
