"""Cancellation (at period end, reactivate, immediate with a prorated refund through
Stripe), pause and resume, and trial extension by support, on test clocks."""

from __future__ import annotations

from datetime import timedelta

import httpx

from tests.api.billing_support import (
    api_key,
    at,
    call,
    events_of,
    line_tuples,
    prorated,
    rejected,
    start_active,
    stripe_refunds,
    timeline,
)
from tests.conftest import Stack
from tests.helpers import (
    advance,
    entitled,
    event_types,
    get_sub,
    invoices,
    make_clock,
    make_customer,
    make_plan,
    ok,
    subscribe,
    ts,
)


async def test_cancel_at_period_end_then_reactivate_then_cancel_for_good(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1500, features=["posts", "archive"])
    period_end = at(2027, 10, 1)
    customer, clock, sub = await start_active(api, plan, at(2027, 9, 1))
    await advance(api, clock["id"], at(2027, 9, 10))

    scheduled = ok(await call(api, sub["id"], "cancel", {"at_period_end": True}))
    assert (scheduled["status"], scheduled["cancel_at_period_end"]) == ("active", True)
    assert scheduled["canceled_at"] is None
    (event,) = await events_of(api, sub["id"], "subscription.cancel_scheduled")
    assert ts(event["data"]["at"]) == period_end
    assert await entitled(api, customer["id"], "archive")

    again = ok(await call(api, sub["id"], "cancel"))  # the body defaults to at_period_end
    assert again["cancel_at_period_end"] is True
    assert len(await events_of(api, sub["id"], "subscription.cancel_scheduled")) == 1

    undone = ok(await call(api, sub["id"], "reactivate"))
    assert (undone["status"], undone["cancel_at_period_end"]) == ("active", False)
    assert len(await events_of(api, sub["id"], "subscription.reactivated")) == 1
    rejected(await call(api, sub["id"], "reactivate"), 409, "not_pending_cancel")

    ok(await call(api, sub["id"], "cancel", {"at_period_end": True}))
    await advance(api, clock["id"], period_end - timedelta(seconds=1))
    assert (await get_sub(api, sub["id"]))["status"] == "active"
    assert await entitled(api, customer["id"], "archive")

    await advance(api, clock["id"], period_end + timedelta(days=3))
    ended = await get_sub(api, sub["id"])
    assert ended["status"] == "canceled"
    assert ts(ended["canceled_at"]) == period_end
    assert ended["cancel_at_period_end"] is False
    assert not await entitled(api, customer["id"], "archive")
    assert not await entitled(api, customer["id"], "posts")
    bills = await invoices(api, sub["id"])
    assert [b["billing_reason"] for b in bills] == ["subscription_create"], "no renewal"
    (canceled,) = await events_of(api, sub["id"], "subscription.canceled")
    assert canceled["data"]["reason"] == "cancel_at_period_end"
    assert ts(canceled["occurred_at"]) == period_end
    revoked = await events_of(api, sub["id"], "entitlement.revoked")
    assert sorted(e["data"]["feature"] for e in revoked) == ["archive", "posts"]

    rejected(await call(api, sub["id"], "reactivate"), 409, "subscription_canceled")
    rejected(await call(api, sub["id"], "cancel"), 409, "subscription_canceled")


async def test_immediate_cancel_with_prorated_refund(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    api = app_client
    plan = await make_plan(api, amount=3000, features=["posts"])
    customer, clock, sub = await start_active(api, plan, at(2027, 10, 1))
    moment = at(2027, 10, 11)
    await advance(api, clock["id"], moment)
    credit = -prorated(3000, 21 * 86_400, 31 * 86_400)
    assert credit == -2032

    canceled = ok(
        await call(api, sub["id"], "cancel", {"at_period_end": False, "refund": "prorated"})
    )
    assert canceled["status"] == "canceled"
    assert ts(canceled["canceled_at"]) == moment
    assert not await entitled(api, customer["id"], "posts")

    first, note = await invoices(api, sub["id"])
    assert (first["billing_reason"], first["total"], first["status"]) == (
        "subscription_create",
        3000,
        "paid",
    )
    assert (note["billing_reason"], note["total"], note["status"]) == (
        "subscription_cancel_refund",
        credit,
        "credited",
    )
    assert line_tuples(note) == [("proration", credit, moment, at(2027, 11, 1))]
    assert stripe_refunds(stack, first) == [(2032, "succeeded")]

    (refunded,) = await events_of(api, sub["id"], "invoice.refunded")
    assert refunded["data"]["credit_note_id"] == note["id"]
    assert refunded["data"]["amount"] == 2032
    assert refunded["data"]["refunded_invoices"] == [first["id"]]
    types = await event_types(api, sub["id"])
    assert types.index("invoice.refunded") < types.index("subscription.canceled")


async def test_refund_after_an_upgrade_spreads_over_both_payments(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    api = app_client
    basic = await make_plan(api, amount=1000, features=["posts"])
    pro = await make_plan(api, amount=3000, features=["posts"])
    _, clock, sub = await start_active(api, basic, at(2027, 11, 1))  # a 30-day period
    await advance(api, clock["id"], at(2027, 11, 4))
    upgrade = ok(await call(api, sub["id"], "change_plan", {"plan_id": pro["id"]}))["invoice"]
    assert upgrade["total"] == -900 + 2700

    await advance(api, clock["id"], at(2027, 11, 7))
    ok(await call(api, sub["id"], "cancel", {"at_period_end": False, "refund": "prorated"}))
    first, paid_upgrade, note = await invoices(api, sub["id"])
    assert note["total"] == -2400  # 24 of 30 days at 3000
    # Newest payment first: all 1800 of the upgrade, then 600 of the first invoice.
    assert stripe_refunds(stack, paid_upgrade) == [(1800, "succeeded")]
    assert stripe_refunds(stack, first) == [(600, "succeeded")]
    (refunded,) = await events_of(api, sub["id"], "invoice.refunded")
    assert refunded["data"]["amount"] == 2400
    assert refunded["data"]["refunded_invoices"] == [paid_upgrade["id"], first["id"]]


async def test_immediate_cancel_invoices_deferred_prorations(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    api = app_client
    basic = await make_plan(api, amount=1000, features=["posts"])
    pro = await make_plan(api, amount=2000, features=["posts"])
    _, clock, sub = await start_active(api, basic, at(2027, 11, 1))
    await advance(api, clock["id"], at(2027, 11, 16))  # half of 30 days
    body = {"plan_id": pro["id"], "proration": "create_prorations"}
    ok(await call(api, sub["id"], "change_plan", body))

    ok(await call(api, sub["id"], "cancel", {"at_period_end": False}))
    final = (await invoices(api, sub["id"]))[-1]
    assert final["billing_reason"] == "subscription_cancel"
    assert [(k, a) for k, a, _, _ in line_tuples(final)] == [
        ("proration", -500),
        ("proration", 1000),
    ]
    assert (final["total"], final["status"]) == (500, "paid")
    assert await events_of(api, sub["id"], "invoice.refunded") == []


async def test_cancel_rejections(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=1000)
    _, _, sub = await start_active(api, plan, at(2027, 6, 1))
    before = await timeline(api, sub["id"])
    rejected(
        await call(api, sub["id"], "cancel", {"at_period_end": True, "refund": "prorated"}),
        422,
        "invalid_refund",
    )
    rejected(
        await call(api, sub["id"], "cancel", {"at_period_end": False, "refund": "all"}),
        422,
        "validation_error",
    )
    rejected(await call(api, sub["id"], "cancel", {"when": "now"}), 422, "validation_error")
    rejected(await call(api, "sub_missing", "cancel"), 404, "resource_missing")
    assert await timeline(api, sub["id"]) == before
    assert (await get_sub(api, sub["id"]))["status"] == "active"


async def test_pause_across_a_boundary_then_resume_starts_a_charged_period(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    plan = await make_plan(api, amount=3000, features=["posts"])
    customer, clock, sub = await start_active(api, plan, at(2027, 1, 1))
    paused_at = at(2027, 1, 20)
    await advance(api, clock["id"], paused_at)

    paused = ok(await call(api, sub["id"], "pause", {}))
    assert paused["status"] == "paused"
    assert ts(paused["pause"]["paused_at"]) == paused_at
    assert paused["pause"]["resumes_at"] is None
    assert not await entitled(api, customer["id"], "posts")
    credit = -prorated(3000, 12 * 86_400, 31 * 86_400)  # Jan 20 -> Feb 1 unused
    assert credit == -1161
    (event,) = await events_of(api, sub["id"], "subscription.paused")
    assert event["data"]["credit"] == credit

    rejected(await call(api, sub["id"], "pause"), 409, "subscription_not_pausable")
    await advance(api, clock["id"], at(2027, 3, 5))
    assert (await get_sub(api, sub["id"]))["status"] == "paused"
    assert len(await invoices(api, sub["id"])) == 1, "no charge while paused"
    assert not await entitled(api, customer["id"], "posts")

    resumed = ok(await call(api, sub["id"], "resume"))
    assert resumed["status"] == "active"
    assert resumed["pause"] is None
    assert ts(resumed["current_period_start"]) == at(2027, 3, 5)
    assert ts(resumed["current_period_end"]) == at(2027, 4, 5)
    assert await entitled(api, customer["id"], "posts")
    bill = (await invoices(api, sub["id"]))[-1]
    assert (bill["billing_reason"], bill["status"]) == ("subscription_resume", "paid")
    assert line_tuples(bill) == [
        ("proration", credit, paused_at, at(2027, 2, 1)),
        ("subscription", 3000, at(2027, 3, 5), at(2027, 4, 5)),
    ]
    assert bill["total"] == 1839
    types = await event_types(api, sub["id"])
    assert types[types.index("subscription.resumed") + 1] == "invoice.paid"
    rejected(await call(api, sub["id"], "resume"), 409, "subscription_not_paused")

    await advance(api, clock["id"], at(2027, 4, 5))
    renewal = (await invoices(api, sub["id"]))[-1]
    assert line_tuples(renewal) == [("subscription", 3000, at(2027, 4, 5), at(2027, 5, 5))]


async def test_pause_with_resumes_at_resumes_by_itself(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=2000, features=["posts"])
    cheaper = await make_plan(api, amount=1200, features=["posts"])
    customer, clock, sub = await start_active(api, plan, at(2027, 6, 1))
    await advance(api, clock["id"], at(2027, 6, 16))  # 15 of 30 days left
    resumes_at = at(2027, 7, 15, 12)
    # A downgrade scheduled before the pause applies when the subscription resumes.
    ok(await call(api, sub["id"], "change_plan", {"plan_id": cheaper["id"]}))

    rejected(
        await call(api, sub["id"], "pause", {"resumes_at": at(2027, 6, 10).isoformat()}),
        422,
        "invalid_resumes_at",
    )
    rejected(
        await call(api, sub["id"], "pause", {"resumes_at": "2027-07-15T12:00:00"}),
        422,
        "validation_error",
    )
    rejected(
        await call(api, sub["id"], "pause", {"resumes_at": "2199-12-31T00:00:00Z"}),
        422,
        "invalid_resumes_at",
    )
    rejected(
        await call(api, sub["id"], "pause", {"resumes_at": "9999-12-31T00:00:00Z"}),
        422,
        "time_out_of_range",
    )
    rejected(
        await call(api, sub["id"], "pause", {"resumes_at": "9999-12-31T23:00:00-01:00"}),
        422,
        "validation_error",
    )
    paused = ok(await call(api, sub["id"], "pause", {"resumes_at": resumes_at.isoformat()}))
    assert ts(paused["pause"]["resumes_at"]) == resumes_at

    await advance(api, clock["id"], resumes_at - timedelta(seconds=1))
    assert (await get_sub(api, sub["id"]))["status"] == "paused"
    await advance(api, clock["id"], at(2027, 8, 1))
    sub = await get_sub(api, sub["id"])
    assert (sub["status"], sub["plan_id"], sub["pending_change"]) == ("active", cheaper["id"], None)
    assert ts(sub["current_period_start"]) == resumes_at
    assert ts(sub["current_period_end"]) == at(2027, 8, 15, 12)
    assert await entitled(api, customer["id"], "posts")
    bill = (await invoices(api, sub["id"]))[-1]
    assert bill["billing_reason"] == "subscription_resume"
    assert ts(bill["created_at"]) == resumes_at
    assert [(k, a) for k, a, _, _ in line_tuples(bill)] == [
        ("proration", -1000),  # the unused half of the paid June period, at the old price
        ("subscription", 1200),
    ]
    assert bill["total"] == 200
    (changed,) = await events_of(api, sub["id"], "subscription.plan_changed")
    assert changed["data"]["when"] == "resume"
    (resumed,) = await events_of(api, sub["id"], "subscription.resumed")
    assert resumed["actor"] is None
    assert ts(resumed["occurred_at"]) == resumes_at


async def test_pause_is_refused_while_a_cancel_is_pending(app_client: httpx.AsyncClient) -> None:
    api = app_client
    plan = await make_plan(api, amount=2000)
    _, _, sub = await start_active(api, plan, at(2027, 6, 1))
    ok(await call(api, sub["id"], "cancel", {"at_period_end": True}))
    rejected(await call(api, sub["id"], "pause"), 409, "subscription_cancel_pending")
    assert (await get_sub(api, sub["id"]))["status"] == "active"


async def test_extend_trial_by_support_only_and_only_later(app_client: httpx.AsyncClient) -> None:
    api = app_client
    support, product = await api_key(api, "support"), await api_key(api, "product")
    plan = await make_plan(api, amount=1500, trial_days=14, features=["posts"])
    customer = await make_customer(api)
    start = at(2027, 2, 1, 9)
    clock = await make_clock(api, start)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    trial_end, extended = start + timedelta(days=14), start + timedelta(days=21)
    assert ts(sub["trial_end"]) == trial_end

    body = {"trial_end": extended.isoformat()}
    rejected(await call(api, sub["id"], "extend_trial", body, headers=product), 403, "forbidden")
    earlier = {"trial_end": (trial_end - timedelta(days=1)).isoformat()}
    rejected(
        await call(api, sub["id"], "extend_trial", earlier, headers=support),
        422,
        "invalid_trial_end",
    )
    too_far = {"trial_end": (start + timedelta(days=800)).isoformat()}
    rejected(
        await call(api, sub["id"], "extend_trial", too_far, headers=support),
        422,
        "invalid_trial_end",
    )
    for bad in ("2027-03-01T00:00:00", "0001-01-01T00:00:00+01:00", "soon"):
        rejected(
            await call(api, sub["id"], "extend_trial", {"trial_end": bad}, headers=support),
            422,
            "validation_error",
        )
    assert await events_of(api, sub["id"], "subscription.trial_extended") == []

    done = ok(await call(api, sub["id"], "extend_trial", body, headers=support))
    assert done["status"] == "trialing"
    assert ts(done["trial_end"]) == extended
    assert ts(done["current_period_end"]) == extended
    (event,) = await events_of(api, sub["id"], "subscription.trial_extended")
    assert ts(event["data"]["from_trial_end"]) == trial_end
    assert ts(event["data"]["trial_end"]) == extended
    assert event["actor"]

    await advance(api, clock["id"], trial_end + timedelta(hours=1))
    assert (await get_sub(api, sub["id"]))["status"] == "trialing"
    assert await invoices(api, sub["id"]) == []
    assert await entitled(api, customer["id"], "posts")

    await advance(api, clock["id"], extended)
    active = await get_sub(api, sub["id"])
    assert active["status"] == "active"
    (bill,) = await invoices(api, sub["id"])
    assert line_tuples(bill) == [("subscription", 1500, extended, at(2027, 3, 22, 9))]
    rejected(
        await call(api, sub["id"], "extend_trial", body, headers=support),
        409,
        "subscription_not_trialing",
    )


async def test_cancel_during_trial_at_period_end_keeps_the_trial(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1500, trial_days=7, features=["posts"])
    customer = await make_customer(api)
    start = at(2027, 2, 1)
    clock = await make_clock(api, start)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    scheduled = ok(await call(api, sub["id"], "cancel"))
    assert (scheduled["status"], scheduled["cancel_at_period_end"]) == ("trialing", True)
    assert await entitled(api, customer["id"], "posts")

    await advance(api, clock["id"], start + timedelta(days=8))
    ended = await get_sub(api, sub["id"])
    assert ended["status"] == "canceled"
    assert ts(ended["canceled_at"]) == start + timedelta(days=7)
    assert await invoices(api, sub["id"]) == [], "a canceled trial is never charged"
    assert not await entitled(api, customer["id"], "posts")
