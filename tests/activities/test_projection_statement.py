"""The one-statement projection (db/repositories/projection.py) against the real
PostgreSQL, on a scratch database: the deliveries it queues follow the routing rule
(`outbox.endpoint_wants`, which `outbox.queue_webhooks` shares), in timeline order; a
repeat writes and queues nothing; an older state never overwrites a newer one;
entitlements end up exactly granted; invoices named in the request leave `open`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import session_factory
from db.repositories import outbox
from db.repositories.projection import write_projection
from domain.contracts import EntitlementGrant, EventDraft, SubscriptionView, SyncRequest
from domain.notifications import EMAIL_LANE

NOW = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)
ENDPOINTS = [  # id, patterns, registered, disabled
    ("we_all", ["*"], NOW - timedelta(days=3), False),
    ("we_invoices", ["invoice.*"], NOW - timedelta(days=2), False),
    ("we_renewed", ["subscription.renewed", "customer.updated"], NOW - timedelta(days=1), False),
    ("we_bare_prefix", ["invoice"], NOW - timedelta(days=1), False),  # no wildcard: no match
    ("we_off", ["*"], NOW - timedelta(days=1), True),
    ("we_later", ["*"], NOW + timedelta(seconds=1), False),  # registered after the event
]
# Event type -> the webhook endpoints that get it, in registration order.
ROUTES = {
    "invoice.paid": ["we_all", "we_invoices"],
    "subscription.renewed": ["we_all", "we_renewed"],
    "entitlement.granted": ["we_all"],
    "invoice.payment_failed": ["we_all", "we_invoices"],
    "invoices.paid": ["we_all"],  # `invoice.*` is the prefix `invoice.`, not `invoice`
    "subscription.renewed_twice": ["we_all"],  # an exact type matches only itself
}
TYPES = list(ROUTES)


def _view(version: int, status: str = "active") -> SubscriptionView:
    return SubscriptionView(
        id="sub_p",
        customer_id="cus_p",
        plan_id="plan_p",
        status=status,
        current_period_start=NOW,
        current_period_end=NOW + timedelta(days=30),
        created_at=NOW - timedelta(days=60),
        state_version=version,
    )


def _events(prefix: str) -> list[EventDraft]:
    return [
        EventDraft(
            id=f"{prefix}_{n}",
            type=type_,
            subscription_id="sub_p",
            customer_id="cus_p",
            occurred_at=NOW,
            data={"n": n, "note": "ünïcode"},
        )
        for n, type_ in enumerate(TYPES)
    ]


async def _endpoints(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for id_, patterns, registered, disabled in ENDPOINTS:
            await conn.execute(
                text(
                    "INSERT INTO webhook_endpoints (id, url, events, secret, disabled, created_at)"
                    " VALUES (:id, 'https://example.com/h', CAST(:events AS json), 'whsec_x',"
                    " :disabled, :created_at)"
                ),
                {
                    "id": id_,
                    "events": json.dumps(patterns),
                    "disabled": disabled,
                    "created_at": registered,
                },
            )


async def _write(engine: AsyncEngine, req: SyncRequest) -> list[tuple[str, str, str]]:
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        return await write_projection(conn, req, NOW)


async def _rows(engine: AsyncEngine, sql: str) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(row) for row in await conn.execute(text(sql))]


async def test_deliveries_follow_the_routing_rules_in_timeline_order(scratch: AsyncEngine) -> None:
    await _endpoints(scratch)
    events = _events("evt")
    queued = await _write(scratch, SyncRequest(subscription=_view(1), events=events))

    emails = {"subscription.renewed", "invoice.payment_failed"}  # those with a template
    expected = [
        ("sub_p", target, e.id)
        for e in events
        for target in ROUTES[e.type] + ([EMAIL_LANE] if e.type in emails else [])
    ]
    assert sorted(queued) == sorted(expected), "each event's webhooks, and its email"

    lanes = await _rows(
        scratch, "SELECT target, event_id FROM notification_outbox ORDER BY target, id"
    )
    by_lane: dict[object, list[object]] = {}
    for target, event_id in lanes:
        by_lane.setdefault(target, []).append(event_id)
    order = [e.id for e in events]
    for target, ids in by_lane.items():
        assert ids == sorted(ids, key=order.index), f"lane {target} in timeline order"
    stored = await _rows(scratch, "SELECT id, data::text FROM events ORDER BY seq")
    assert [i for i, _ in stored] == order, "seq follows the timeline"
    assert json.loads(str(stored[0][1])) == {"n": 0, "note": "ünïcode"}


async def test_a_repeat_writes_and_queues_nothing_and_old_states_lose(
    scratch: AsyncEngine,
) -> None:
    await _endpoints(scratch)
    async with scratch.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO invoices (id, subscription_id, customer_id, status, billing_reason,"
                " total, currency, period_start, period_end, created_at) VALUES ('in_v',"
                " 'sub_p', 'cus_p', 'open', 'subscription_cycle', 900, 'usd', :t, :t, :t)"
            ),
            {"t": NOW},
        )
    first = SyncRequest(
        subscription=_view(2),
        events=_events("evt"),
        entitlements=EntitlementGrant(features=["a", "b"], plan_id="plan_p"),
    )
    assert await _write(scratch, first)
    assert await _write(scratch, first) == [], "a retried projection queues nothing again"
    outbox_rows = await _rows(scratch, "SELECT count(*) FROM notification_outbox")

    older = SyncRequest(subscription=_view(1, status="past_due"), events=[])
    await _write(scratch, older)
    assert await _rows(scratch, "SELECT status, state_version FROM subscriptions") == [
        ("active", 2)
    ], "an older state never overwrites a newer one"

    newer = SyncRequest(
        subscription=_view(3, status="canceled"),
        events=[],
        entitlements=EntitlementGrant(features=["b", "c"], plan_id="plan_q"),
        invoice_status={"in_v": "void"},
    )
    assert await _write(scratch, newer) == []
    assert await _rows(scratch, "SELECT status, state_version FROM subscriptions") == [
        ("canceled", 3)
    ]
    assert await _rows(scratch, "SELECT feature, plan_id FROM entitlements ORDER BY feature") == [
        ("b", "plan_q"),
        ("c", "plan_q"),
    ], "exactly the granted features"
    assert await _rows(scratch, "SELECT status FROM invoices") == [("void",)]
    assert await _rows(scratch, "SELECT count(*) FROM events") == [(len(TYPES),)]
    assert await _rows(scratch, "SELECT count(*) FROM notification_outbox") == outbox_rows

    # No grant in the request: entitlements are left as they are.
    await _write(scratch, SyncRequest(subscription=_view(4), events=[]))
    assert await _rows(scratch, "SELECT count(*) FROM entitlements") == [(2,)]


async def test_a_single_event_is_routed_by_the_same_rule(scratch: AsyncEngine) -> None:
    """`queue_webhooks` (the Stripe inbox's timeline events) sends each type where the
    projection does (no email: those events have no template)."""
    await _endpoints(scratch)
    async with session_factory(scratch)() as session:
        for n, event_type in enumerate(TYPES):
            queued = await outbox.queue_webhooks(session, "sub_q", f"evt_q{n}", event_type, NOW)
            assert sorted(queued) == sorted(ROUTES[event_type]), event_type
        again = await outbox.queue_webhooks(session, "sub_q", "evt_q0", TYPES[0], NOW)
        assert again == [], "a delivery already queued is kept, not queued twice"
        await session.commit()
