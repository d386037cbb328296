"""The usage so far in invoice previews, through the real stack on a test clock: a preview
of the next renewal carries the `usage` line it would bill in arrears (priced on the usage
so far, discounted like a real invoice), a preview of a change that removes a metered item
now bills that item up to the change, and a preview claims and closes nothing (the real
renewal counts the events that came after it).

Expected amounts are worked out here by hand, not with `domain/`."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.billing_support import at
from tests.api.test_item_discounts import coupon
from tests.api.usage_support import (
    customer_on_clock,
    event,
    kinds,
    make_meter,
    metered_plan,
    subscribed_on_clock,
    token_plans,
)
from tests.helpers import advance, invoices, ok, subscribe


async def preview(api: httpx.AsyncClient, sub_id: str, **change: Any) -> dict[str, Any]:
    path = f"/v1/subscriptions/{sub_id}/update_items"
    answer = ok(await api.post(path, json=change | {"preview": True}))
    assert "invoice" not in answer, "a preview charges nothing"
    return answer["invoice_preview"]  # type: ignore[no-any-return]


def usage_of(invoice: dict[str, Any]) -> list[tuple[int, str, str]]:
    return [
        (line["amount"], line["period_start"], line["period_end"])
        for line in invoice["lines"]
        if line["kind"] == "usage"
    ]


async def test_previews_show_the_usage_so_far_and_claim_nothing(
    app_client: httpx.AsyncClient,
) -> None:
    api = app_client
    seat, metered = await token_plans(api)
    # Half off the metered plan only: the discount looks at the usage lines.
    half = await coupon(api, percent_off=50, duration="forever", applies_to_plans=[metered["id"]])
    customer, clock = await customer_on_clock(api, at(2028, 7, 1))
    both = [{"plan_id": seat["id"], "quantity": 2}, {"plan_id": metered["id"]}]
    sub = await subscribe(
        api,
        customer_id=customer["id"],
        items=both,
        coupon_id=half["id"],
        test_clock_id=clock["id"],
    )
    (opening,) = await invoices(api, sub["id"])
    assert kinds(opening) == [("subscription", 2000)], "nothing eligible: no discount line"
    cus = customer["id"]
    ok(await api.post("/v1/usage_events", json=event(cus, "v1", tokens=2500)), 202)
    await advance(api, clock["id"], at(2028, 7, 11))
    july = ("2028-07-01T00:00:00Z", "2028-08-01T00:00:00Z")

    # A decrease waits for the period end: the renewal it previews bills one seat for
    # August and July's usage so far, 2500 tokens = 3 packages of 200, half off.
    one_seat = [{"plan_id": seat["id"], "quantity": 1}, {"plan_id": metered["id"]}]
    later = await preview(api, sub["id"], items=one_seat)
    assert kinds(later) == [("subscription", 1000), ("usage", 600), ("discount", -300)]
    assert usage_of(later) == [(600, *july)]
    assert later["total"] == 1300

    # Removing the metered item now, prorations for the next invoice: the renewal bills
    # the item's usage up to the change (July 11) beside the seat's prorations.
    seats_only = [{"plan_id": seat["id"], "quantity": 1}]
    now = await preview(api, sub["id"], items=seats_only, when="now", proration="create_prorations")
    assert [kind for kind, _ in kinds(now)] == [
        "proration",
        "proration",
        "subscription",
        "usage",
        "discount",
    ]
    assert usage_of(now) == [(600, "2028-07-01T00:00:00Z", "2028-07-11T00:00:00Z")]
    assert kinds(now)[-1] == ("discount", -300)

    # Schedule the decrease; previewing the current items (which drops it) shows the
    # renewal as it stands, two seats.
    scheduled = ok(
        await api.post(f"/v1/subscriptions/{sub['id']}/update_items", json={"items": one_seat})
    )
    assert scheduled["subscription"]["pending_change"] is not None
    kept = await preview(api, sub["id"], items=both)
    assert kinds(kept) == [("subscription", 2000), ("usage", 600), ("discount", -300)]

    # The previews claimed nothing: a later event still counts on the real renewal.
    ok(await api.post("/v1/usage_events", json=event(cus, "v2", tokens=1000)), 202)
    shown = ok(await api.get(f"/v1/subscriptions/{sub['id']}/usage"))
    assert [u["amount"] for u in shown] == [800]
    await advance(api, clock["id"], at(2028, 8, 1, 1, 0, 1))
    renewal = (await invoices(api, sub["id"]))[-1]
    assert renewal["billing_reason"] == "subscription_cycle"
    assert kinds(renewal) == [("subscription", 1000), ("usage", 800), ("discount", -400)]
    assert usage_of(renewal) == [(800, *july)]
    assert renewal["status"] == "paid" and renewal["total"] == 1400


async def test_a_preview_of_an_interval_change_of_metered_items(
    app_client: httpx.AsyncClient,
) -> None:
    """Metered items alone, moved to a yearly plan: nothing is invoiced now, so the preview
    is the renewal that ends the new year, with the monthly item's usage up to the change
    and the yearly one's (none yet) over the new period."""
    api = app_client
    meter = await make_meter(api, "count")
    monthly = await metered_plan(api, meter, 50)
    yearly = await metered_plan(api, meter, 40, interval="year")
    customer, clock, sub = await subscribed_on_clock(api, at(2028, 11, 1), monthly)
    calls = [event(customer["id"], f"y{i}") for i in range(3)]
    ok(await api.post("/v1/usage_events/batch", json={"events": calls}), 202)
    await advance(api, clock["id"], at(2028, 11, 11))
    shown = await preview(api, sub["id"], items=[{"plan_id": yearly["id"]}])
    assert (shown["billing_reason"], shown["period_start"], shown["period_end"]) == (
        "subscription_cycle",
        "2029-11-11T00:00:00Z",
        "2030-11-11T00:00:00Z",
    )
    assert usage_of(shown) == [
        (0, "2028-11-11T00:00:00Z", "2029-11-11T00:00:00Z"),
        (150, "2028-11-01T00:00:00Z", "2028-11-11T00:00:00Z"),
    ]
