"""Search attributes stay current through a lifecycle, and a projection upserts only the
ones that changed (a plain renewal: `NextBillingAt` alone)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from tests.api.billing_support import start_active
from tests.helpers import advance, get_sub, make_plan, ok, ts
from workflows import search_attributes as sa
from workflows.details import changed_only, search_attribute_updates
from workflows.messages import CarriedState, workflow_id_for

START = datetime(2029, 5, 10, 8, 0, tzinfo=UTC)
FAILING_CARD = "pm_card_chargeCustomerFail"


async def _attributes(handle: WorkflowHandle[Any, Any]) -> TypedSearchAttributes:
    return (await handle.describe()).typed_search_attributes


async def _upserted_keys(handle: WorkflowHandle[Any, Any]) -> list[list[str]]:
    """The attribute names of each of the workflow's own search attribute upserts in the run,
    in order (not the SDK's `TemporalChangeVersion`, which records patches)."""
    history = await handle.fetch_history()
    upserts = [
        e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    ]
    names = [sorted(k for k in fields if k != "TemporalChangeVersion") for fields in upserts]
    return [n for n in names if n]


async def test_attributes_follow_renewal_and_dunning_and_change_only_what_moved(
    app_client: httpx.AsyncClient, temporal_client: Client
) -> None:
    api = app_client
    plan = await make_plan(api, amount=1900)
    customer, clock, sub = await start_active(api, plan, START)
    handle = temporal_client.get_workflow_handle(workflow_id_for(sub["id"]))

    attrs = await _attributes(handle)
    assert attrs.get(sa.SUBSCRIPTION_STATUS) == "active"
    assert attrs.get(sa.PLAN_ID) == plan["id"]
    assert attrs.get(sa.CUSTOMER_ID) == customer["id"]
    assert attrs.get(sa.TEST_CLOCK_ID) == clock["id"]
    assert attrs.get(sa.DUNNING_ATTEMPT) == 0
    assert attrs.get(sa.NEXT_BILLING_AT) == ts(sub["current_period_end"])
    upserts_before = len(await _upserted_keys(handle))

    await advance(api, clock["id"], datetime(2029, 6, 10, 8, 0, tzinfo=UTC))  # one renewal
    renewed = await get_sub(api, sub["id"])
    attrs = await _attributes(handle)
    assert attrs.get(sa.NEXT_BILLING_AT) == ts(renewed["current_period_end"])
    assert attrs.get(sa.NEXT_BILLING_AT) == datetime(2029, 7, 10, 8, 0, tzinfo=UTC)
    assert (await _upserted_keys(handle))[upserts_before:] == [["NextBillingAt"]]

    # The card fails at the next renewal: past due, first failed attempt, next retry.
    ok(
        await api.post(
            f"/v1/customers/{customer['id']}/payment_method", json={"payment_method": FAILING_CARD}
        )
    )
    await advance(api, clock["id"], datetime(2029, 7, 10, 8, 0, tzinfo=UTC))
    past_due = await get_sub(api, sub["id"])
    assert past_due["status"] == "past_due"
    attrs = await _attributes(handle)
    assert attrs.get(sa.SUBSCRIPTION_STATUS) == "past_due"
    assert attrs.get(sa.DUNNING_ATTEMPT) == 1
    assert attrs.get(sa.NEXT_BILLING_AT) == ts(past_due["dunning"]["next_retry_at"])
    assert attrs.get(sa.PLAN_ID) == plan["id"], "unchanged attributes stay"


def test_changed_only_keeps_what_differs_and_unsets_of_what_is_set() -> None:
    state = CarriedState.model_validate(
        {
            "status": "active",
            "plan": {
                "plan_id": "plan_a",
                "name": "A",
                "amount": 100,
                "currency": "usd",
                "interval": "month",
            },
            "created_at": START,
            "billing_cycle_anchor": START,
            "current_period_start": START,
            "current_period_end": datetime(2029, 6, 10, 8, 0, tzinfo=UTC),
        }
    )
    updates = search_attribute_updates(state)
    assert [u.key.name for u in changed_only(updates, TypedSearchAttributes.empty)] == [
        "SubscriptionStatus",
        "PlanId",
        "DunningAttempt",
        "NextBillingAt",
    ], "nothing set yet: all of them"
    now_set = TypedSearchAttributes(
        [
            SearchAttributePair(sa.SUBSCRIPTION_STATUS, "active"),
            SearchAttributePair(sa.PLAN_ID, "plan_a"),
            SearchAttributePair(sa.DUNNING_ATTEMPT, 0),
            SearchAttributePair(sa.NEXT_BILLING_AT, datetime(2029, 5, 10, 8, 0, tzinfo=UTC)),
        ]
    )
    assert [u.key.name for u in changed_only(updates, now_set)] == ["NextBillingAt"]
    state.status = "canceled"
    gone = changed_only(search_attribute_updates(state), now_set)
    assert [(u.key.name, u.value) for u in gone] == [
        ("SubscriptionStatus", "canceled"),
        ("NextBillingAt", None),
    ], "a canceled subscription bills no more: the attribute is unset"
