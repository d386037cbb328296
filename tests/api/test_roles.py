"""The role-by-route matrix: 401 without a valid key, 403 for a role the route does not admit."""

from __future__ import annotations

import httpx
import pytest

ANY = {"admin", "product", "support"}
ADMIN = {"admin"}
PRODUCT = {"admin", "product"}
SUPPORT = {"admin", "support"}
PRODUCT_SUPPORT = {"admin", "product", "support"}

# (method, path, roles admitted). Ids are unknown on purpose: an admitted role gets a 404/422,
# never a side effect.
MATRIX: list[tuple[str, str, set[str]]] = [
    ("POST", "/v1/plans", ADMIN),
    ("GET", "/v1/plans", ANY),
    ("GET", "/v1/plans/plan_missing", ANY),
    ("POST", "/v1/api_keys", ADMIN),
    ("GET", "/v1/api_keys", ADMIN),
    ("DELETE", "/v1/api_keys/key_missing", ADMIN),
    ("POST", "/v1/customers", PRODUCT),
    ("GET", "/v1/customers/cus_missing", ANY),
    ("POST", "/v1/customers/cus_missing/payment_method", PRODUCT_SUPPORT),
    ("GET", "/v1/customers/cus_missing/entitlements", ANY),
    ("GET", "/v1/entitlements/check?customer_id=cus_missing&feature=x", ANY),
    ("POST", "/v1/subscriptions", PRODUCT),
    ("GET", "/v1/subscriptions", ANY),
    ("GET", "/v1/subscriptions/sub_missing", ANY),
    ("POST", "/v1/subscriptions/sub_missing/change_plan", PRODUCT),
    ("POST", "/v1/subscriptions/sub_missing/cancel", PRODUCT_SUPPORT),
    ("POST", "/v1/subscriptions/sub_missing/reactivate", PRODUCT),
    ("POST", "/v1/subscriptions/sub_missing/pause", PRODUCT),
    ("POST", "/v1/subscriptions/sub_missing/resume", PRODUCT),
    ("POST", "/v1/subscriptions/sub_missing/retry_payment", SUPPORT),
    ("POST", "/v1/subscriptions/sub_missing/extend_trial", SUPPORT),
    ("GET", "/v1/invoices?subscription_id=sub_missing", ANY),
    ("GET", "/v1/invoices/in_missing", ANY),
    ("GET", "/v1/events?subscription_id=sub_missing", ANY),
    ("POST", "/v1/test_clocks", PRODUCT),
    ("GET", "/v1/test_clocks/clock_missing", PRODUCT),
    ("POST", "/v1/test_clocks/clock_missing/advance", PRODUCT),
    ("POST", "/v1/coupons", PRODUCT),
    ("GET", "/v1/coupons", ANY),
    ("GET", "/v1/coupons/coupon_missing", ANY),
    ("DELETE", "/v1/coupons/coupon_missing", PRODUCT),
    ("POST", "/v1/promotion_codes", PRODUCT),
    ("GET", "/v1/promotion_codes", ANY),
    ("GET", "/v1/promotion_codes/promo_missing", ANY),
    ("POST", "/v1/promotion_codes/promo_missing/deactivate", PRODUCT),
    ("POST", "/v1/subscriptions/sub_missing/discount", PRODUCT),
    ("DELETE", "/v1/subscriptions/sub_missing/discount", PRODUCT),
]


@pytest.fixture(scope="module")
async def role_keys(app_client: httpx.AsyncClient) -> dict[str, str]:
    keys = {}
    for role in ("product", "support"):
        created = await app_client.post(
            "/v1/api_keys", json={"role": role, "name": f"matrix {role}"}
        )
        assert created.status_code == 201, created.text
        keys[role] = created.json()["key"]
    keys["admin"] = app_client.headers["Authorization"].removeprefix("Bearer ")
    return keys


async def _call(api: httpx.AsyncClient, method: str, path: str, auth: str | None) -> httpx.Response:
    headers = {"Authorization": auth} if auth is not None else {}
    # A body that fails validation: an admitted role must still be told 4xx, never 2xx.
    body = {"unexpected_field": True} if method == "POST" else None
    request = api.build_request(method, path, json=body, headers=headers)
    if auth is None:
        request.headers.pop("Authorization", None)
    return await api.send(request)


@pytest.mark.parametrize(
    ("method", "path", "admitted"), MATRIX, ids=[f"{m} {p}" for m, p, _ in MATRIX]
)
async def test_role_matrix(
    app_client: httpx.AsyncClient,
    role_keys: dict[str, str],
    method: str,
    path: str,
    admitted: set[str],
) -> None:
    missing = await _call(app_client, method, path, None)
    assert missing.status_code == 401, missing.text
    assert missing.json()["error"]["code"] == "unauthorized"
    unknown = await _call(app_client, method, path, "Bearer rk_not_a_real_key")
    assert unknown.status_code == 401
    for role, raw in role_keys.items():
        response = await _call(app_client, method, path, f"Bearer {raw}")
        if role in admitted:
            assert response.status_code not in (401, 403), f"{role}: {response.text}"
            assert response.status_code < 500, f"{role}: {response.text}"
        else:
            assert response.status_code == 403, f"{role}: {response.status_code} {response.text}"
            assert response.json()["error"]["code"] == "forbidden"


async def test_revoked_key_is_refused_at_once(app_client: httpx.AsyncClient) -> None:
    created = (await app_client.post("/v1/api_keys", json={"role": "support"})).json()
    auth = {"Authorization": f"Bearer {created['key']}"}
    assert (await app_client.get("/v1/plans", headers=auth)).status_code == 200
    revoked = await app_client.delete(f"/v1/api_keys/{created['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert (await app_client.get("/v1/plans", headers=auth)).status_code == 401
    listed = (await app_client.get("/v1/api_keys")).json()
    assert all("key" not in k and "key_hash" not in k for k in listed), "keys are shown only once"
