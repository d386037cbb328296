"""A lifecycle request sent again with its `Idempotency-Key` gets the first answer.

A product backend whose upgrade timed out (a worker killed mid-charge, say) sends it again;
the first one may well have been applied. With the same key the second call is the same
workflow update, answered with the first one's outcome: no `409 same_plan`, no second
charge. Without a key it is a new request, judged on the state it finds.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from tests.api.billing_support import at, call, rejected, start_active
from tests.helpers import advance, invoices, make_plan, ok

START = at(2030, 10, 6, 9, 0)


async def test_an_upgrade_sent_twice_with_its_key_is_applied_and_charged_once(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    basic = await make_plan(api, amount=1000)
    plus = await make_plan(api, amount=3000)
    _, clock, sub = await start_active(api, basic, START)
    await advance(api, clock["id"], START + timedelta(days=5))
    headers = {"Idempotency-Key": "upgrade-once-1"}
    body = {"plan_id": plus["id"]}
    first = ok(await call(api, sub["id"], "change_plan", body, headers=headers))
    again = ok(await call(api, sub["id"], "change_plan", body, headers=headers))
    assert again["invoice"]["id"] == first["invoice"]["id"]
    assert again["subscription"]["plan_id"] == plus["id"]
    assert len(await invoices(api, sub["id"])) == 2  # the first and one upgrade
    # Without the key, the same body is a new request on a subscription already on plus.
    rejected(await call(api, sub["id"], "change_plan", body), 409, "same_plan")


async def test_a_support_retry_sent_twice_with_its_key_is_one_attempt(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1500)
    customer, clock, sub = await start_active(api, plan, START)
    cards = f"/v1/customers/{customer['id']}/payment_method"
    ok(await api.post(cards, json={"payment_method": "pm_card_chargeCustomerFail"}))
    await advance(api, clock["id"], START + timedelta(days=31))
    headers = {"Idempotency-Key": "retry-once-1"}
    first = ok(await call(api, sub["id"], "retry_payment", headers=headers))
    again = ok(await call(api, sub["id"], "retry_payment", headers=headers))
    assert again == first
    [renewal] = [i for i in await invoices(api, sub["id"]) if i["status"] == "open"]
    assert len(renewal["attempts"]) == 2  # the renewal's own and one support retry


async def test_a_key_too_long_is_a_400(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=1500)
    _, _, sub = await start_active(api, plan, START)
    response = await call(api, sub["id"], "reactivate", headers={"Idempotency-Key": "k" * 256})
    rejected(response, 400, "invalid_idempotency_key")
