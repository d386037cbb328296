"""`Idempotency-Key` is reserved before any work: concurrent duplicates create one thing and
charge once; a failed first request can be retried; records expire; no secret is stored."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.stripe_gateway import StripeGateway
from db.engine import get_engine
from tests.conftest import ADMIN_KEY, Stack
from tests.helpers import make_customer, make_plan, ok

CONCURRENCY = 20


@pytest.fixture
def engine(stack: Stack) -> AsyncEngine:
    return get_engine(stack.settings.effective_database_url)


async def _scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"idem-{uuid.uuid4().hex}"}


async def _storm(
    api: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]
) -> list[httpx.Response]:
    return list(
        await asyncio.gather(
            *(api.post(path, json=body, headers=headers) for _ in range(CONCURRENCY))
        )
    )


def _one_answer(responses: list[httpx.Response]) -> dict[str, Any]:
    """Every answer is the same 201 body, or a 409 `idempotency_in_progress`; never a 5xx."""
    assert all(r.status_code < 500 for r in responses), [r.text for r in responses]
    created = [r for r in responses if r.status_code == 201]
    busy = [r for r in responses if r.status_code == 409]
    assert len(created) + len(busy) == len(responses), [r.text for r in responses]
    assert all(r.json()["error"]["code"] == "idempotency_in_progress" for r in busy)
    assert created, "at least the first request answered"
    bodies = {r.text for r in created}
    assert len(bodies) == 1, bodies
    return created[0].json()  # type: ignore[no-any-return]


async def _succeeded_payments(stack: Stack, customer: dict[str, Any]) -> int:
    gateway = StripeGateway.from_settings(stack.settings)
    try:
        return await gateway.count_succeeded_payments(
            stripe_customer_id=customer["stripe_customer_id"], idempotency_prefix=""
        )
    finally:
        await gateway.aclose()


async def test_concurrent_duplicate_subscription_creates_and_charges_once(
    app_client: httpx.AsyncClient, stack: Stack, engine: AsyncEngine
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1900)
    customer = await make_customer(api, "pm_card_visa")
    body = {"customer_id": customer["id"], "plan_id": plan["id"]}

    sub = _one_answer(await _storm(api, "/v1/subscriptions", body, _key()))

    assert sub["status"] == "active"
    subs = ok(await api.get("/v1/subscriptions", params={"customer_id": customer["id"]}))
    assert [s["id"] for s in subs] == [sub["id"]]
    paid = await _scalar(
        engine,
        "select count(*) from invoices where customer_id = :c and status = 'paid'",
        c=customer["id"],
    )
    assert paid == 1
    assert await _succeeded_payments(stack, customer) == 1


async def test_concurrent_duplicate_trial_subscription_creates_one(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1900)
    customer = await make_customer(api, "pm_card_visa")
    body = {"customer_id": customer["id"], "plan_id": plan["id"], "trial_days": 14}

    sub = _one_answer(await _storm(api, "/v1/subscriptions", body, _key()))

    assert sub["status"] == "trialing"
    subs = ok(await api.get("/v1/subscriptions", params={"customer_id": customer["id"]}))
    assert [s["id"] for s in subs] == [sub["id"]]
    assert await _succeeded_payments(stack, customer) == 0


async def test_concurrent_duplicate_customer_creates_one(
    app_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    email = f"twin-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "name": "Twin", "payment_method": "pm_card_visa"}

    customer = _one_answer(await _storm(app_client, "/v1/customers", body, _key()))

    rows = await _scalar(engine, "select count(*) from customers where email = :e", e=email)
    assert rows == 1
    assert customer["email"] == email


async def test_a_replay_is_the_stored_answer_and_another_body_is_refused(
    app_client: httpx.AsyncClient,
) -> None:
    headers = _key()
    body = {"email": f"once-{uuid.uuid4().hex[:8]}@example.com", "name": "Once"}
    first = ok(await app_client.post("/v1/customers", json=body, headers=headers), 201)
    again = await app_client.post("/v1/customers", json=body, headers=headers)
    assert (again.status_code, again.json()) == (201, first)

    other = await app_client.post(
        "/v1/customers", json={**body, "name": "Someone else"}, headers=headers
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


async def test_a_failed_first_request_releases_the_key(
    app_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """A 404 (no such plan yet) keeps no record: the same key and body succeed later."""
    plan_id = f"plan_{uuid.uuid4().hex[:12]}"
    customer = await make_customer(app_client, "pm_card_visa")
    headers = _key()
    body = {"customer_id": customer["id"], "plan_id": plan_id, "trial_days": 7}

    missing = await app_client.post("/v1/subscriptions", json=body, headers=headers)
    assert missing.status_code == 404, missing.text
    left = await _scalar(
        engine,
        "select count(*) from idempotency_records where key = :k",
        k=headers["Idempotency-Key"],
    )
    assert left == 0

    await _insert_plan(engine, plan_id)
    created = await app_client.post("/v1/subscriptions", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["plan_id"] == plan_id


async def _insert_plan(engine: AsyncEngine, plan_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "insert into plans (id, name, amount, currency, interval, interval_count,"
                " trial_days, features, created_at)"
                " values (:id, 'Late', 700, 'usd', 'month', 1, 0, '[\"posts\"]', now())"
            ),
            {"id": plan_id},
        )


async def test_a_record_older_than_a_day_is_expired_and_purged(
    app_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    headers = _key()
    name = f"Tier {uuid.uuid4().hex[:6]}"
    body = {"name": name, "amount": 500, "currency": "usd", "interval": "month"}
    first = ok(await app_client.post("/v1/plans", json=body, headers=headers), 201)
    forgotten = f"forgotten-{uuid.uuid4().hex}"
    day_ago = datetime.now(UTC) - timedelta(hours=25)
    async with engine.begin() as conn:
        await conn.execute(
            text("update idempotency_records set created_at = :t where key = :k"),
            {"t": day_ago, "k": headers["Idempotency-Key"]},
        )
        await conn.execute(
            text(
                "insert into idempotency_records (api_key_id, key, method, path, request_hash,"
                " status_code, response_body, created_at) select api_key_id, :f, method, path,"
                " request_hash, status_code, response_body, :t from idempotency_records"
                " where key = :k"
            ),
            {"f": forgotten, "t": day_ago, "k": headers["Idempotency-Key"]},
        )

    second = ok(await app_client.post("/v1/plans", json=body, headers=headers), 201)

    assert second["id"] != first["id"], "an expired key is a new request"
    purged = "select count(*) from idempotency_records where key = :f"
    assert await _scalar(engine, purged, f=forgotten) == 0, "expired records are purged"
    old = "select count(*) from idempotency_records where created_at < now() - interval '1 day'"
    assert await _scalar(engine, old) == 0


async def test_a_stale_reservation_of_a_crashed_request_is_taken_over(
    app_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """A reservation left by a process that died mid-request blocks only until the lock
    timeout: then the same key is served as new."""
    headers = _key()
    async with engine.begin() as conn:
        key_id = (
            await conn.execute(
                text("select id from api_keys where key_hash = encode(sha256(:k), 'hex')"),
                {"k": ADMIN_KEY.encode()},
            )
        ).scalar_one()
        await conn.execute(
            text(
                "insert into idempotency_records (api_key_id, key, method, path, request_hash,"
                " reservation, created_at) values (:a, :k, 'POST', '/v1/plans', 'x', 'dead', :t)"
            ),
            {
                "a": key_id,
                "k": headers["Idempotency-Key"],
                "t": datetime.now(UTC) - timedelta(minutes=5),
            },
        )
    body = {"name": "Taken over", "amount": 500, "currency": "usd", "interval": "month"}
    plan = ok(await app_client.post("/v1/plans", json=body, headers=headers), 201)
    again = ok(await app_client.post("/v1/plans", json=body, headers=headers), 201)
    assert again == plan


async def test_the_api_key_record_stores_no_secret(
    app_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    headers = _key()
    body = {"role": "support", "name": f"desk-{uuid.uuid4().hex[:6]}"}
    created = ok(await app_client.post("/v1/api_keys", json=body, headers=headers), 201)
    assert created["key"].startswith("rk_")

    stored = await _scalar(
        engine,
        "select response_body::text from idempotency_records where key = :k",
        k=headers["Idempotency-Key"],
    )
    assert created["key"] not in stored

    replay = await app_client.post("/v1/api_keys", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["idempotency-redacted"] == "key"
    assert replay.json() == {**created, "key": None}


async def test_the_webhook_endpoint_record_stores_no_signing_secret(
    app_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    headers = _key()
    body = {"url": "http://127.0.0.1:9/recur", "events": ["subscription.paused"]}
    created = ok(await app_client.post("/v1/webhook_endpoints", json=body, headers=headers), 201)
    stored = await _scalar(
        engine,
        "select response_body::text from idempotency_records where key = :k",
        k=headers["Idempotency-Key"],
    )
    assert created["secret"] not in stored
    replay = await app_client.post("/v1/webhook_endpoints", json=body, headers=headers)
    assert replay.json() == {**created, "secret": None}
    ok(await app_client.delete(f"/v1/webhook_endpoints/{created['id']}"))


@pytest.fixture(autouse=True)
async def _no_leftover_reservations(engine: AsyncEngine) -> AsyncIterator[None]:
    """No test leaves an in-progress reservation behind (each request answers or releases)."""
    yield
    held = "select count(*) from idempotency_records where status_code is null"
    assert await _scalar(engine, held) == 0


async def test_a_duplicate_of_a_request_still_running_gets_409_in_progress(
    app_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """A reservation younger than the lock timeout is a request still at work: the duplicate
    waits for its answer, and gets 409 `idempotency_in_progress` when none comes in time."""
    headers = {**_key(), "Content-Type": "application/json"}
    raw = b'{"name": "Busy", "amount": 500, "currency": "usd", "interval": "month"}'
    digest = hashlib.sha256(b"/v1/plans\0" + raw).hexdigest()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "insert into idempotency_records (api_key_id, key, method, path, request_hash,"
                " reservation, created_at) select id, :k, 'POST', '/v1/plans', :h, 'running',"
                " now() from api_keys where key_hash = encode(sha256(:admin), 'hex')"
            ),
            {"k": headers["Idempotency-Key"], "h": digest, "admin": ADMIN_KEY.encode()},
        )
    try:
        busy = await app_client.post("/v1/plans", content=raw, headers=headers)
        assert busy.status_code == 409, busy.text
        assert busy.json()["error"]["code"] == "idempotency_in_progress"
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                text("delete from idempotency_records where key = :k"),
                {"k": headers["Idempotency-Key"]},
            )
