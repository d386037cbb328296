"""Outbound webhooks: signed, at least once, in order per subscription, through 500s, with a
queryable delivery log; a dead endpoint never holds up the subscription."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, update
from standardwebhooks import Webhook, WebhookVerificationError

from activities.webhook_signing import SECRET_BYTES, new_secret, signed_headers
from db.delivery_tables import WebhookEndpoint
from db.engine import get_engine
from devstack.process import free_port
from tests.conftest import Stack
from tests.helpers import (
    advance,
    eventually,
    get_sub,
    make_clock,
    make_customer,
    make_plan,
    ok,
    subscribe,
)
from tests.webhook_receiver import Receiver

START = datetime(2027, 5, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
async def endpoints(app_client: httpx.AsyncClient) -> AsyncIterator[list[str]]:
    """Endpoint ids registered by a test; disabled afterwards so later tests skip them."""
    created: list[str] = []
    yield created
    for endpoint_id in created:
        ok(await app_client.delete(f"/v1/webhook_endpoints/{endpoint_id}"))


async def _register(
    api: httpx.AsyncClient, created: list[str], url: str, events: list[str]
) -> dict[str, Any]:
    endpoint = ok(await api.post("/v1/webhook_endpoints", json={"url": url, "events": events}), 201)
    created.append(endpoint["id"])
    return endpoint  # type: ignore[no-any-return]


async def _timeline(api: httpx.AsyncClient, sub_id: str) -> list[dict[str, Any]]:
    return ok(await api.get("/v1/events", params={"subscription_id": sub_id}))  # type: ignore[no-any-return]


async def _get(api: httpx.AsyncClient, path: str, params: dict[str, Any]) -> Any:
    return ok(await api.get(path, params=params))


async def test_signed_events_arrive_once_in_order_after_500s(
    app_client: httpx.AsyncClient, endpoints: list[str]
) -> None:
    api = app_client
    everything = await Receiver(fail_first=3).start()
    billing = await Receiver().start()
    try:
        ep = await _register(api, endpoints, everything.url, ["*"])
        assert ep["id"].startswith("we_") and ep["secret"].startswith("whsec_")
        everything.secret = ep["secret"]
        ep2 = await _register(api, endpoints, billing.url, ["invoice.*", "subscription.canceled"])
        billing.secret = ep2["secret"]
        listed = ok(await api.get("/v1/webhook_endpoints"))
        assert {e["id"] for e in listed} >= {ep["id"], ep2["id"]}
        assert all("secret" not in e for e in listed), "the secret is shown only at creation"

        plan = await make_plan(api, amount=1500, trial_days=7, features=["posts", "archive"])
        customer = await make_customer(api)
        # Other tests' subscriptions may still emit events; the 500s are for this one's.
        everything.fail_customer = customer["id"]
        clock = await make_clock(api, START)
        sub = await subscribe(
            api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
        )
        await advance(api, clock["id"], START + timedelta(days=7))  # warning, then activation
        await advance(api, clock["id"], START + timedelta(days=7 + 31))  # one renewal
        ok(await api.post(f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": False}))

        timeline = await _timeline(api, sub["id"])
        expected = [e["id"] for e in timeline]
        types = [e["type"] for e in timeline]
        for wanted in ("subscription.trial_will_end", "subscription.renewed", "invoice.paid"):
            assert wanted in types
        assert "subscription.canceled" in types
        assert types[-1] == "entitlement.revoked"
        await everything.wait_for(lambda: everything.first_seen_ids(sub["id"]) == expected)
        assert everything.bad_signatures == 0
        assert everything.failed_on_purpose == 3

        first = everything.for_subscription(sub["id"])[0]
        assert first["_attempt"] == "4", "answered 500 three times, accepted on the 4th"
        assert first["_webhook_id"] == first["id"], "webhook-id is the event id"
        assert first["id"] == timeline[0]["id"]
        assert first["type"] == "subscription.created"
        assert first["data"]["subscription_id"] == sub["id"]
        assert first["data"]["customer_id"] == customer["id"]
        assert first["data"]["plan_id"] == plan["id"]
        assert datetime.fromisoformat(first["created"]) == START

        billing_expected = [
            e["id"]
            for e in timeline
            if e["type"].startswith("invoice.") or e["type"] == "subscription.canceled"
        ]
        await billing.wait_for(lambda: billing.first_seen_ids(sub["id"]) == billing_expected)
        assert billing.bad_signatures == 0

        log = ok(
            await api.get(
                f"/v1/webhook_endpoints/{ep['id']}/deliveries",
                params={"subscription_id": sub["id"], "limit": 1000},
            )
        )
        assert {d["event_id"] for d in log} == set(expected)
        assert all(d["status"] == "delivered" and d["last_status_code"] == 204 for d in log)
        by_event = {d["event_id"]: d for d in log}
        assert by_event[expected[0]]["attempts"] == 4
        assert by_event[expected[0]]["delivered_at"] is not None
        assert by_event[expected[1]]["attempts"] == 1
        failed = ok(
            await api.get(
                f"/v1/webhook_endpoints/{ep['id']}/deliveries", params={"status": "failed"}
            )
        )
        assert failed == []
    finally:
        await everything.stop()
        await billing.stop()


async def test_dead_endpoint_never_blocks_the_subscription(
    app_client: httpx.AsyncClient, endpoints: list[str]
) -> None:
    api = app_client
    dead_url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    ep = await _register(api, endpoints, dead_url, ["*"])
    plan = await make_plan(api, amount=800, trial_days=3, features=["posts"])
    customer = await make_customer(api)
    clock = await make_clock(api, START)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    await advance(api, clock["id"], START + timedelta(days=3 + 31))
    assert (await get_sub(api, sub["id"]))["status"] == "active"
    path = f"/v1/webhook_endpoints/{ep['id']}/deliveries"
    params = {"subscription_id": sub["id"], "limit": 1000}
    # Each event takes its 8 attempts (about 3 s) before the lane moves on: the whole
    # timeline was written long before the endpoint could have failed all of it.
    timeline = await _timeline(api, sub["id"])
    assert len(timeline) >= 8
    log = ok(await api.get(path, params=params))
    assert sum(d["status"] == "failed" for d in log) < len(timeline) - 2
    # The first event is retried with backoff (8 attempts in tests), then marked failed,
    # and the endpoint's lane moves on to the next event.
    log = await eventually(
        lambda: _get(api, path, params),
        lambda log: any(d["status"] == "failed" for d in log) and len(log) >= 2,
        timeout=60,
        what="a failed delivery",
    )
    oldest = log[-1]
    assert oldest["status"] == "failed"
    assert oldest["attempts"] == 8
    assert oldest["last_status_code"] is None
    assert oldest["last_error"].startswith("ConnectError")


async def test_endpoint_validation_and_roles(
    app_client: httpx.AsyncClient, endpoints: list[str]
) -> None:
    api = app_client
    bad = [
        {"url": "ftp://example.com/hook", "events": ["*"]},
        {"url": "not a url", "events": ["*"]},
        {"url": "https://example.com/hook", "events": []},
        {"url": "https://example.com/hook", "events": ["Subscription Created"]},
        {"url": "https://example.com/hook"},
        {"url": "https://example.com/hook", "events": ["*"], "extra": 1},
    ]
    for body in bad:
        response = await api.post("/v1/webhook_endpoints", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "validation_error"

    product = ok(await api.post("/v1/api_keys", json={"role": "product"}), 201)
    headers = {"Authorization": f"Bearer {product['key']}"}
    denied = await api.post(
        "/v1/webhook_endpoints",
        json={"url": "https://example.com/hook", "events": ["*"]},
        headers=headers,
    )
    assert denied.status_code == 403
    assert (await api.get("/v1/webhook_endpoints", headers=headers)).status_code == 403

    missing = await api.get("/v1/webhook_endpoints/we_nope/deliveries")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "resource_missing"

    ep = await _register(api, endpoints, "https://example.com/hook", ["subscription.*"])
    assert ep["events"] == ["subscription.*"]
    gone = ok(await api.delete(f"/v1/webhook_endpoints/{ep['id']}"))
    assert gone["disabled"] is True


def _headers(secret: str, body: bytes, at: datetime, message_id: str = "evt_1") -> Any:
    return signed_headers(secret, message_id, at, body)


@pytest.mark.parametrize(
    "secret",
    [new_secret(), "whsec_" + secrets.token_hex(24)],
    ids=["issued", "hex-before-standard-webhooks"],
)
def test_a_receiver_verifies_with_standardwebhooks(secret: str) -> None:
    """Both secret forms sign what a receiver's `standardwebhooks.Webhook(secret)` accepts;
    anything altered, signed with another secret or too old is refused."""
    body = json.dumps({"id": "evt_1", "type": "invoice.paid"}).encode()
    now = datetime.now(UTC)
    receiver = Webhook(secret)
    headers = _headers(secret, body, now)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")
    assert receiver.verify(body, headers) == {"id": "evt_1", "type": "invoice.paid"}

    refused = [
        (body + b" ", headers),
        (body, {**headers, "webhook-id": "evt_2"}),
        (body, _headers(new_secret(), body, now)),
        (body, _headers(secret, body, now - timedelta(minutes=6))),
        (body, {k: v for k, v in headers.items() if k != "webhook-signature"}),
    ]
    for data, sent in refused:
        with pytest.raises(WebhookVerificationError):
            receiver.verify(data, sent)


def test_issued_secrets_are_standard_webhooks_keys() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == SECRET_BYTES


async def test_an_endpoint_with_a_hex_secret_keeps_receiving(
    app_client: httpx.AsyncClient, endpoints: list[str], stack: Stack
) -> None:
    """An endpoint registered when secrets were `whsec_` and hex digits: deliveries to it
    still verify with the library and that same secret string."""
    api = app_client
    receiver = await Receiver().start()
    try:
        ep = await _register(api, endpoints, receiver.url, ["subscription.created"])
        legacy = "whsec_" + secrets.token_hex(24)
        engine = get_engine(stack.settings.effective_database_url)
        async with engine.begin() as conn:
            await conn.execute(
                update(WebhookEndpoint)
                .where(col(WebhookEndpoint.id) == ep["id"])
                .values(secret=legacy)
            )
        receiver.secret = legacy
        plan = await make_plan(api, amount=900)
        sub = await subscribe(api, customer_id=(await make_customer(api))["id"], plan_id=plan["id"])
        await receiver.wait_for(lambda: bool(receiver.for_subscription(sub["id"])))
        assert receiver.bad_signatures == 0
        [delivered] = receiver.for_subscription(sub["id"])
        assert delivered["type"] == "subscription.created"
    finally:
        await receiver.stop()
