"""The HTTP contract's general rules: error shape, idempotency keys, validation, test clocks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
import stripe
from temporalio.client import Client, WorkflowUpdateFailedError

from tests.conftest import Stack
from tests.helpers import make_clock, make_customer, make_plan, ok, subscribe
from workflows.messages import AdvanceClock, workflow_id_for
from workflows.subscription import SubscriptionWorkflow


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return str(body["error"]["message"])


async def test_customer_is_created_in_stripe_with_its_card(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    customer = await make_customer(app_client, "pm_card_visa")
    assert customer["id"].startswith("cus_")
    base = stack.settings.effective_stripe_api_base
    assert base is not None
    client = stripe.StripeClient("sk_test_recur_tests", base_addresses={"api": base})
    remote = client.v1.customers.retrieve(customer["stripe_customer_id"])
    assert remote.email == customer["email"]
    assert remote.invoice_settings.default_payment_method == customer["default_payment_method"]
    fetched = ok(await app_client.get(f"/v1/customers/{customer['id']}"))
    assert fetched == customer


async def test_idempotency_key_replays_and_rejects_reuse(app_client: httpx.AsyncClient) -> None:
    key = f"idem-{uuid.uuid4().hex}"
    body = {"name": "Idempotent", "amount": 990, "currency": "usd", "interval": "month"}
    first = await app_client.post("/v1/plans", json=body, headers={"Idempotency-Key": key})
    second = await app_client.post("/v1/plans", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json(), "same key, same body: the same plan, created once"
    plans = ok(await app_client.get("/v1/plans"))
    assert sum(p["id"] == first.json()["id"] for p in plans) == 1
    other = await app_client.post(
        "/v1/plans", json={**body, "amount": 991}, headers={"Idempotency-Key": key}
    )
    _error(other, 409, "idempotency_key_reused")


async def test_idempotent_subscription_create_starts_one_workflow(
    app_client: httpx.AsyncClient,
) -> None:
    plan = await make_plan(app_client, amount=500)
    customer = await make_customer(app_client)
    body = {"customer_id": customer["id"], "plan_id": plan["id"]}
    key = {"Idempotency-Key": f"sub-{uuid.uuid4().hex}"}
    first = ok(await app_client.post("/v1/subscriptions", json=body, headers=key), 201)
    again = ok(await app_client.post("/v1/subscriptions", json=body, headers=key), 201)
    assert first == again
    listed = ok(await app_client.get("/v1/subscriptions", params={"customer_id": customer["id"]}))
    assert [s["id"] for s in listed] == [first["id"]]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "x", "amount": 10.5, "currency": "usd", "interval": "month"}, "validation_error"),
        (
            {"name": "x", "amount": "1000", "currency": "usd", "interval": "month"},
            "validation_error",
        ),
        ({"name": "x", "amount": -1, "currency": "usd", "interval": "month"}, "validation_error"),
        (
            {"name": "x", "amount": 100, "currency": "dollars", "interval": "month"},
            "validation_error",
        ),
        ({"name": "x", "amount": 100, "currency": "usd", "interval": "week"}, "validation_error"),
        (
            {"name": "x", "amount": 100, "currency": "usd", "interval": "month", "bogus": 1},
            "validation_error",
        ),
    ],
)
async def test_invalid_plans_are_422(
    app_client: httpx.AsyncClient, body: dict[str, object], code: str
) -> None:
    _error(await app_client.post("/v1/plans", json=body), 422, code)


async def test_malformed_json_and_unknown_ids(app_client: httpx.AsyncClient) -> None:
    bad = await app_client.post(
        "/v1/subscriptions",
        content=b'{"customer_id": ',
        headers={"content-type": "application/json"},
    )
    _error(bad, 400, "invalid_json")
    _error(await app_client.get("/v1/subscriptions/sub_nope"), 404, "resource_missing")
    _error(await app_client.get("/v1/invoices/in_nope"), 404, "resource_missing")
    _error(await app_client.get("/v1/plans/plan_nope"), 404, "resource_missing")
    _error(await app_client.get("/v1/nowhere"), 404, "not_found")
    plan = await make_plan(app_client)
    missing_customer = await app_client.post(
        "/v1/subscriptions", json={"customer_id": "cus_nope", "plan_id": plan["id"]}
    )
    _error(missing_customer, 404, "resource_missing")
    _error(await app_client.get("/v1/events"), 422, "validation_error")
    _error(
        await app_client.get("/v1/subscriptions", params={"status": "sleeping"}),
        422,
        "validation_error",
    )


async def test_invalid_payment_method_is_422(app_client: httpx.AsyncClient) -> None:
    response = await app_client.post(
        "/v1/customers", json={"email": "x@example.com", "payment_method": "pm_card_doesnotexist"}
    )
    _error(response, 422, "payment_method_invalid")


async def test_test_clock_rules(app_client: httpx.AsyncClient) -> None:
    clock = await make_clock(app_client, datetime(2030, 1, 1, tzinfo=UTC))
    assert clock["status"] == "ready"
    back = await app_client.post(
        f"/v1/test_clocks/{clock['id']}/advance", json={"frozen_time": "2029-12-31T00:00:00Z"}
    )
    _error(back, 422, "invalid_frozen_time")
    naive = await app_client.post(
        f"/v1/test_clocks/{clock['id']}/advance", json={"frozen_time": "2030-02-01T00:00:00"}
    )
    _error(naive, 422, "validation_error")
    plan = await make_plan(app_client)
    customer = await make_customer(app_client)
    missing = await app_client.post(
        "/v1/subscriptions",
        json={"customer_id": customer["id"], "plan_id": plan["id"], "test_clock_id": "clock_nope"},
    )
    _error(missing, 404, "resource_missing")
    sub = await subscribe(
        app_client, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    assert sub["created_at"].startswith("2030-01-01"), "a subscription lives in its clock's time"
    advanced = ok(
        await app_client.post(
            f"/v1/test_clocks/{clock['id']}/advance", json={"frozen_time": "2030-02-01T00:00:00Z"}
        )
    )
    assert advanced["frozen_time"].startswith("2030-02-01") and advanced["status"] == "ready"
    assert ok(await app_client.get(f"/v1/test_clocks/{clock['id']}")) == advanced


async def test_real_time_subscription_rejects_clock_advance_update(
    app_client: httpx.AsyncClient, temporal_client: Client
) -> None:
    """A subscription without a test clock is never moved by a clock (the validator says no)."""
    plan = await make_plan(app_client)
    customer = await make_customer(app_client)
    sub = await subscribe(app_client, customer_id=customer["id"], plan_id=plan["id"])
    assert sub["test_clock_id"] is None
    handle = temporal_client.get_workflow_handle(workflow_id_for(sub["id"]))
    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await handle.execute_update(
            SubscriptionWorkflow.advance_clock, AdvanceClock(to=datetime(2040, 1, 1, tzinfo=UTC))
        )
    assert getattr(rejected.value.cause, "type", None) == "not_on_test_clock"
    assert (await handle.query(SubscriptionWorkflow.state)).status == "active"
