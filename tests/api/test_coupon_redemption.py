"""Redeeming coupons and promotion codes on `POST /v1/subscriptions`: every refusal with its
code and no trace, `max_redemptions` under concurrent requests, and a creation that fails
after its redemption was counted gives it back."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from api.redemption_sweeper import RedemptionSweeper
from api.routes import subscriptions as subscription_routes
from db.engine import get_engine, session_factory
from domain import errors
from tests.api.billing_support import at, rejected
from tests.conftest import Stack
from tests.helpers import advance, get_sub, make_clock, make_customer, make_plan, ok


def uid() -> str:
    return uuid.uuid4().hex[:10]


async def coupon(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    payload = {"name": "Launch", "percent_off": 25, "duration": "forever", **body}
    return ok(await api.post("/v1/coupons", json=payload), 201)  # type: ignore[no-any-return]


async def code(api: httpx.AsyncClient, coupon_id: str, **body: Any) -> dict[str, Any]:
    payload = {"code": f"CODE{uid()}", "coupon_id": coupon_id, **body}
    return ok(await api.post("/v1/promotion_codes", json=payload), 201)  # type: ignore[no-any-return]


async def times_redeemed(api: httpx.AsyncClient, coupon_id: str) -> int:
    return int(ok(await api.get(f"/v1/coupons/{coupon_id}"))["times_redeemed"])


async def subscribe(api: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await api.post("/v1/subscriptions", json=body)


@pytest.fixture(scope="module")
async def plan(app_client: httpx.AsyncClient) -> dict[str, Any]:
    return await make_plan(app_client, amount=2000)


@pytest.fixture(scope="module")
async def trial_plan(app_client: httpx.AsyncClient) -> dict[str, Any]:
    return await make_plan(app_client, amount=2000, trial_days=7)


@pytest.mark.parametrize("trial", [True, False], ids=["trial", "charged"])
async def test_concurrent_redemptions_never_pass_the_coupon_cap(
    app_client: httpx.AsyncClient,
    plan: dict[str, Any],
    trial_plan: dict[str, Any],
    trial: bool,
) -> None:
    capped = await coupon(app_client, max_redemptions=3)
    customers = await asyncio.gather(*(make_customer(app_client) for _ in range(8)))
    target = trial_plan if trial else plan
    answers = await asyncio.gather(
        *(
            subscribe(app_client, customer_id=c["id"], plan_id=target["id"], coupon_id=capped["id"])
            for c in customers
        )
    )
    created = [a for a in answers if a.status_code == 201]
    assert len(created) == 3, [a.text for a in answers]
    for answer in answers:
        if answer.status_code != 201:
            rejected(answer, 409, "coupon_exhausted")
    for answer in created:
        assert answer.json()["discount"]["coupon_id"] == capped["id"]
    assert await times_redeemed(app_client, capped["id"]) == 3
    # The refused customers have no subscription at all.
    refused = {c["id"] for c in customers} - {a.json()["customer_id"] for a in created}
    for customer_id in refused:
        listed = ok(await app_client.get("/v1/subscriptions", params={"customer_id": customer_id}))
        assert listed == []


async def test_concurrent_redemptions_never_pass_the_code_cap(
    app_client: httpx.AsyncClient, trial_plan: dict[str, Any]
) -> None:
    base = await coupon(app_client, max_redemptions=10)
    promo = await code(app_client, base["id"], max_redemptions=2)
    customers = await asyncio.gather(*(make_customer(app_client) for _ in range(6)))
    answers = await asyncio.gather(
        *(
            subscribe(
                app_client,
                customer_id=c["id"],
                plan_id=trial_plan["id"],
                promotion_code=promo["code"].lower(),
            )
            for c in customers
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 201, 409, 409, 409, 409]
    for answer in answers:
        if answer.status_code == 409:
            rejected(answer, 409, "promotion_code_inactive")
        else:
            assert answer.json()["discount"]["promotion_code_id"] == promo["id"]
    assert await times_redeemed(app_client, base["id"]) == 2
    assert ok(await app_client.get(f"/v1/promotion_codes/{promo['id']}"))["times_redeemed"] == 2


async def test_refusals_have_their_codes_and_leave_no_trace(
    app_client: httpx.AsyncClient, plan: dict[str, Any], trial_plan: dict[str, Any]
) -> None:
    customer = await make_customer(app_client)
    other = await make_customer(app_client)
    cid = customer["id"]

    async def refused(status: int, code_: str, **body: Any) -> None:
        answer = await subscribe(app_client, customer_id=cid, plan_id=trial_plan["id"], **body)
        rejected(answer, status, code_)

    await refused(404, "coupon_not_found", coupon_id="coupon_nope")
    await refused(404, "promotion_code_not_found", promotion_code="NOPE-NOPE")
    deleted = await coupon(app_client)
    ok(await app_client.delete(f"/v1/coupons/{deleted['id']}"))
    await refused(409, "coupon_expired", coupon_id=deleted["id"])
    used_up = await coupon(app_client, max_redemptions=1)
    ok(
        await subscribe(
            app_client, customer_id=other["id"], plan_id=trial_plan["id"], coupon_id=used_up["id"]
        ),
        201,
    )
    await refused(409, "coupon_exhausted", coupon_id=used_up["id"])
    base = await coupon(app_client)
    off = await code(app_client, base["id"])
    ok(await app_client.post(f"/v1/promotion_codes/{off['id']}/deactivate"))
    await refused(409, "promotion_code_inactive", promotion_code=off["code"])
    euros = await coupon(app_client, percent_off=None, amount_off=100, currency="eur")
    await refused(422, "coupon_not_applicable", coupon_id=euros["id"])
    elsewhere = await coupon(app_client, applies_to_plans=[plan["id"]])
    await refused(422, "coupon_not_applicable", coupon_id=elsewhere["id"])
    theirs = await code(app_client, base["id"], customer_id=other["id"])
    await refused(422, "promotion_code_not_eligible", promotion_code=theirs["code"])
    minimum = await code(app_client, base["id"], minimum_amount=2001)
    await refused(422, "promotion_code_not_eligible", promotion_code=minimum["code"])
    both = await subscribe(
        app_client,
        customer_id=cid,
        plan_id=trial_plan["id"],
        coupon_id=base["id"],
        promotion_code=off["code"],
    )
    rejected(both, 422, "validation_error")
    # A plan that does not exist is refused before anything is counted.
    rejected(
        await subscribe(app_client, customer_id=cid, plan_id="plan_nope", coupon_id=base["id"]),
        404,
        "resource_missing",
    )
    assert ok(await app_client.get("/v1/subscriptions", params={"customer_id": cid})) == []
    for refused_coupon in (deleted, base, euros, elsewhere):
        assert await times_redeemed(app_client, refused_coupon["id"]) == 0
    assert await times_redeemed(app_client, used_up["id"]) == 1


async def test_first_time_codes_and_times_on_the_test_clock(
    app_client: httpx.AsyncClient, plan: dict[str, Any]
) -> None:
    start = at(2031, 3, 1)
    clock = await make_clock(app_client, start)
    base = await coupon(app_client, redeem_by=(start + timedelta(days=10)).isoformat())
    first = await code(app_client, base["id"], first_time_transaction=True)
    customer = await make_customer(app_client)
    sub = ok(
        await subscribe(
            app_client,
            customer_id=customer["id"],
            plan_id=plan["id"],
            test_clock_id=clock["id"],
            promotion_code=first["code"],
        ),
        201,
    )
    assert sub["status"] == "active"
    # The customer has paid now: a first-transaction code is not for them any more.
    again = await subscribe(
        app_client,
        customer_id=customer["id"],
        plan_id=plan["id"],
        test_clock_id=clock["id"],
        promotion_code=first["code"],
    )
    rejected(again, 422, "promotion_code_not_eligible")
    # `redeem_by` is read on the subscription's clock: ten days on, the coupon is over.
    await advance(app_client, clock["id"], start + timedelta(days=10))
    late = await make_customer(app_client)
    answer = await subscribe(
        app_client,
        customer_id=late["id"],
        plan_id=plan["id"],
        test_clock_id=clock["id"],
        coupon_id=base["id"],
    )
    rejected(answer, 409, "coupon_expired")
    assert await times_redeemed(app_client, base["id"]) == 1
    assert (await get_sub(app_client, sub["id"]))["discount"]["coupon_id"] == base["id"]


async def test_a_creation_failing_after_the_count_gives_it_back(
    app_client: httpx.AsyncClient, plan: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    capped = await coupon(app_client, max_redemptions=1)

    async def refuse(*_: object, **__: object) -> object:
        raise errors.ALREADY_EXISTS("Workflow execution already started")

    monkeypatch.setattr(subscription_routes.lifecycle, "start_subscription", refuse)
    customer = await make_customer(app_client)
    answer = await subscribe(
        app_client, customer_id=customer["id"], plan_id=plan["id"], coupon_id=capped["id"]
    )
    rejected(answer, 409, "already_exists")
    assert await times_redeemed(app_client, capped["id"]) == 0
    monkeypatch.undo()
    # The one redemption is still there for the next customer.
    ok(
        await subscribe(
            app_client, customer_id=customer["id"], plan_id=plan["id"], coupon_id=capped["id"]
        ),
        201,
    )
    assert await times_redeemed(app_client, capped["id"]) == 1


async def test_an_unknown_outcome_is_settled_by_the_sweeper(
    app_client: httpx.AsyncClient,
    plan: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    stack: Stack,
) -> None:
    """The workflow did not answer in time: the redemption stays reserved (it may yet be
    applied); the sweeper releases it once it is old enough, as no subscription recorded it."""
    capped = await coupon(app_client, max_redemptions=1)

    async def silent(*_: object, **__: object) -> object:
        raise errors.WORKFLOW_UNAVAILABLE("sub_x's workflow did not answer in time")

    monkeypatch.setattr(subscription_routes.lifecycle, "start_subscription", silent)
    customer = await make_customer(app_client)
    answer = await subscribe(
        app_client, customer_id=customer["id"], plan_id=plan["id"], coupon_id=capped["id"]
    )
    rejected(answer, 503, "workflow_unavailable")
    assert await times_redeemed(app_client, capped["id"]) == 1
    sessions = session_factory(get_engine(stack.settings.effective_database_url))
    young = RedemptionSweeper(sessions, interval=60, grace=timedelta(minutes=5))
    assert await young.sweep() == 0  # too recent: its request could still be running
    assert await times_redeemed(app_client, capped["id"]) == 1
    due = RedemptionSweeper(sessions, interval=60, grace=timedelta(0))
    assert await due.sweep() >= 1
    assert await times_redeemed(app_client, capped["id"]) == 0
