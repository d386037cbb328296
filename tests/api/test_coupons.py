"""Coupons and promotion codes through the API: creation, validation, reads, deletion and
deactivation, roles, `Idempotency-Key`."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.api.billing_support import rejected
from tests.helpers import make_customer, make_plan, ok


def uid() -> str:
    return uuid.uuid4().hex[:10]


async def coupon(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    payload = {"name": "Launch", "percent_off": 25, "duration": "forever", **body}
    return ok(await api.post("/v1/coupons", json=payload), 201)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def product(app_client: httpx.AsyncClient) -> httpx.AsyncClient:
    created = ok(await app_client.post("/v1/api_keys", json={"role": "product"}), 201)
    return httpx.AsyncClient(
        transport=app_client._transport,
        base_url=str(app_client.base_url),
        headers={"Authorization": f"Bearer {created['key']}"},
        timeout=120,
    )


@pytest.fixture(scope="module")
async def support(app_client: httpx.AsyncClient) -> dict[str, str]:
    created = ok(await app_client.post("/v1/api_keys", json={"role": "support"}), 201)
    return {"Authorization": f"Bearer {created['key']}"}


async def test_percent_coupon_as_created_and_read(product: httpx.AsyncClient) -> None:
    created = await coupon(
        product,
        name="Quarter off for three months",
        percent_off=12.5,
        duration="repeating",
        duration_in_months=3,
        max_redemptions=10,
        redeem_by="2030-01-01T00:00:00Z",
    )
    assert created["id"].startswith("coupon_")
    assert created["percent_off"] == 12.5
    assert (created["amount_off"], created["currency"]) == (None, None)
    assert (created["duration"], created["duration_in_months"]) == ("repeating", 3)
    assert (created["times_redeemed"], created["max_redemptions"]) == (0, 10)
    assert created["valid"] is True and created["deleted"] is False
    assert ok(await product.get(f"/v1/coupons/{created['id']}")) == created
    listed = ok(await product.get("/v1/coupons", params={"limit": 500}))
    assert created in listed


async def test_amount_off_coupon_named_by_the_caller(
    app_client: httpx.AsyncClient, product: httpx.AsyncClient
) -> None:
    name = f"FIVE_{uid()}"
    plan = await make_plan(app_client)
    created = await coupon(
        product,
        id=name,
        percent_off=None,
        amount_off=500,
        currency="USD",
        applies_to_plans=[plan["id"]],
    )
    assert created["id"] == name
    assert (created["amount_off"], created["currency"]) == (500, "usd")
    assert created["percent_off"] is None
    assert created["applies_to_plans"] == [plan["id"]]
    again = await product.post(
        "/v1/coupons", json={"id": name, "name": "x", "percent_off": 5, "duration": "once"}
    )
    rejected(again, 409, "already_exists")


@pytest.mark.parametrize(
    "body",
    [
        {"percent_off": 0},
        {"percent_off": 100.01},
        {"percent_off": 12.345},
        {"percent_off": -1},
        {"percent_off": 25, "amount_off": 100, "currency": "usd"},
        {"percent_off": None},
        {"percent_off": None, "amount_off": 100},
        {"percent_off": 25, "currency": "usd"},
        {"duration": "repeating"},
        {"duration": "repeating", "duration_in_months": 0},
        {"duration": "repeating", "duration_in_months": 121},
        {"duration": "once", "duration_in_months": 3},
        {"duration": "sometimes"},
        {"max_redemptions": 0},
        {"amount_off": 1.5, "percent_off": None, "currency": "usd"},
        {"applies_to_plans": []},
        {"redeem_by": "2030-01-01T00:00:00"},
        {"id": "a b"},
        {"name": ""},
        {"surprise": 1},
    ],
)
async def test_invalid_coupons_are_422_and_leave_nothing(
    product: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    marker = f"Bad {uid()}"
    payload = {"name": marker, "percent_off": 25, "duration": "forever", **body}
    rejected(await product.post("/v1/coupons", json=payload), 422, "validation_error")
    listed = ok(await product.get("/v1/coupons", params={"limit": 500}))
    assert marker not in {c["name"] for c in listed}


async def test_a_coupon_on_an_unknown_plan_is_404(product: httpx.AsyncClient) -> None:
    answer = await product.post(
        "/v1/coupons",
        json={"name": "x", "percent_off": 5, "duration": "once", "applies_to_plans": ["plan_nope"]},
    )
    rejected(answer, 404, "resource_missing")


async def test_deleting_a_coupon_stops_it(product: httpx.AsyncClient) -> None:
    created = await coupon(product)
    deleted = ok(await product.delete(f"/v1/coupons/{created['id']}"))
    assert (deleted["deleted"], deleted["valid"]) == (True, False)
    assert ok(await product.get(f"/v1/coupons/{created['id']}"))["deleted"] is True
    # A code over it is refused: the coupon can no longer be redeemed.
    answer = await product.post(
        "/v1/promotion_codes", json={"code": f"DEL{uid()}", "coupon_id": created["id"]}
    )
    rejected(answer, 409, "coupon_expired")


async def test_missing_coupons_and_codes_are_404(product: httpx.AsyncClient) -> None:
    rejected(await product.get("/v1/coupons/coupon_nope"), 404, "coupon_not_found")
    rejected(await product.delete("/v1/coupons/coupon_nope"), 404, "coupon_not_found")
    rejected(await product.get("/v1/promotion_codes/promo_nope"), 404, "promotion_code_not_found")
    rejected(
        await product.post("/v1/promotion_codes/promo_nope/deactivate"),
        404,
        "promotion_code_not_found",
    )
    answer = await product.post(
        "/v1/promotion_codes", json={"code": "NOPE_CODE", "coupon_id": "coupon_nope"}
    )
    rejected(answer, 404, "coupon_not_found")


async def test_promotion_codes_are_unique_in_any_case(product: httpx.AsyncClient) -> None:
    base = await coupon(product)
    text = f"Launch-{uid()}"
    customer = await make_customer(product)
    created = ok(
        await product.post(
            "/v1/promotion_codes",
            json={
                "code": text,
                "coupon_id": base["id"],
                "max_redemptions": 5,
                "expires_at": "2031-05-01T12:00:00+02:00",
                "customer_id": customer["id"],
                "first_time_transaction": True,
                "minimum_amount": 1000,
            },
        ),
        201,
    )
    assert created["id"].startswith("promo_")
    assert created["code"] == text
    assert created["coupon"]["id"] == base["id"]
    assert created["active"] is True
    assert created["expires_at"] == "2031-05-01T10:00:00Z"
    assert (created["customer_id"], created["minimum_amount"]) == (customer["id"], 1000)
    clash = await product.post(
        "/v1/promotion_codes", json={"code": text.upper(), "coupon_id": base["id"]}
    )
    rejected(clash, 409, "already_exists")
    found = ok(await product.get("/v1/promotion_codes", params={"code": text.lower()}))
    assert [c["id"] for c in found] == [created["id"]]
    assert ok(await product.get(f"/v1/promotion_codes/{created['id']}")) == created
    off = ok(await product.post(f"/v1/promotion_codes/{created['id']}/deactivate"))
    assert off["active"] is False
    by_coupon = ok(await product.get("/v1/promotion_codes", params={"coupon_id": base["id"]}))
    assert [c["active"] for c in by_coupon] == [False]


@pytest.mark.parametrize(
    "body",
    [
        {"code": "ab"},
        {"code": "x" * 51},
        {"code": "has space"},
        {"code": "ümlaut"},
        {"max_redemptions": 0},
        {"minimum_amount": -1},
        {"expires_at": "tomorrow"},
    ],
)
async def test_invalid_promotion_codes_are_422(
    product: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    base = await coupon(product)
    payload = {"code": f"OK{uid()}", "coupon_id": base["id"], **body}
    rejected(await product.post("/v1/promotion_codes", json=payload), 422, "validation_error")


async def test_a_code_for_an_unknown_customer_is_404(product: httpx.AsyncClient) -> None:
    base = await coupon(product)
    answer = await product.post(
        "/v1/promotion_codes",
        json={"code": f"C{uid()}", "coupon_id": base["id"], "customer_id": "cus_nope"},
    )
    rejected(answer, 404, "resource_missing")


async def test_roles(
    app_client: httpx.AsyncClient, product: httpx.AsyncClient, support: dict[str, str]
) -> None:
    base = await coupon(product)
    body = {"name": "x", "percent_off": 5, "duration": "once"}
    rejected(await app_client.post("/v1/coupons", json=body, headers=support), 403, "forbidden")
    rejected(
        await app_client.delete(f"/v1/coupons/{base['id']}", headers=support), 403, "forbidden"
    )
    code = {"code": f"R{uid()}", "coupon_id": base["id"]}
    rejected(
        await app_client.post("/v1/promotion_codes", json=code, headers=support), 403, "forbidden"
    )
    # Reads are for every role.
    ok(await app_client.get(f"/v1/coupons/{base['id']}", headers=support))
    ok(await app_client.get("/v1/promotion_codes", headers=support))
    # Admin may do everything.
    ok(await app_client.post("/v1/promotion_codes", json=code), 201)


async def test_idempotency_key_replays_the_creation(product: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": f"coupon-{uid()}"}
    body = {"name": f"Once {uid()}", "amount_off": 300, "currency": "eur", "duration": "once"}
    first = await product.post("/v1/coupons", json=body, headers=key)
    second = await product.post("/v1/coupons", json=body, headers=key)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    listed = ok(await product.get("/v1/coupons", params={"limit": 500}))
    assert [c["id"] for c in listed if c["name"] == body["name"]] == [first.json()["id"]]
    other = await product.post("/v1/coupons", json={**body, "amount_off": 301}, headers=key)
    rejected(other, 409, "idempotency_key_reused")
