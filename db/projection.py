"""Writing a projection of a subscription: read model, timeline, entitlements, invoice
statuses and the deliveries of new events, in one statement.

The projection activity writes every projection the workflow makes (on an autocommit
connection: one round trip, as atomic as a transaction); the API writes the first one of a
subscription that starts with a trial (see `workflows/projection.py`) in its own transaction,
beside the start record.

What the statement does, as one snapshot:

* upserts the read model unless a newer state (higher `state_version`) is already stored;
* inserts the events in timeline order (`seq` follows it), skipping ids already written;
* queues a delivery for each event *it* inserted (so a repeated projection — a retried
  activity, a replayed task — queues nothing twice): one per enabled webhook endpoint that
  was registered before now (real time) and wants the event's type (`domain.notifications.
  wants`, written here in SQL), and one for the customer's email when the type has a
  template. A lane's rows are inserted in timeline order, which is the order they go out;
* when the request grants entitlements, makes the subscription's rows exactly those
  features (each once: a plan stored with a repeated feature, from before the API refused
  one, would otherwise make the upsert touch a row twice and fail for ever);
* moves the invoices named in `invoice_status` out of `open`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from db.driver import compact, fetch_all
from domain.contracts import SyncRequest
from domain.notifications import EMAIL_LANE, EMAIL_TEMPLATES
from domain.plans import distinct_features

_PROJECT = compact(
    """
WITH view AS (
    INSERT INTO subscriptions (id, customer_id, plan_id, status, current_period_start,
        current_period_end, billing_cycle_anchor, trial_end, cancel_at_period_end,
        canceled_at, pause, pending_change, latest_invoice_id, dunning, test_clock_id,
        created_at, updated_at, state_version, discount)
    VALUES (%(id)s, %(customer_id)s, %(plan_id)s, %(status)s, %(current_period_start)s,
        %(current_period_end)s, %(billing_cycle_anchor)s, %(trial_end)s,
        %(cancel_at_period_end)s, %(canceled_at)s, CAST(%(pause)s AS json),
        CAST(%(pending_change)s AS json), %(latest_invoice_id)s, CAST(%(dunning)s AS json),
        %(test_clock_id)s, %(created_at)s, %(now)s, %(state_version)s,
        CAST(%(discount)s AS json))
    ON CONFLICT (id) DO UPDATE SET
        customer_id = excluded.customer_id, plan_id = excluded.plan_id,
        status = excluded.status, current_period_start = excluded.current_period_start,
        current_period_end = excluded.current_period_end,
        billing_cycle_anchor = excluded.billing_cycle_anchor,
        trial_end = excluded.trial_end,
        cancel_at_period_end = excluded.cancel_at_period_end,
        canceled_at = excluded.canceled_at, pause = excluded.pause,
        pending_change = excluded.pending_change,
        latest_invoice_id = excluded.latest_invoice_id, dunning = excluded.dunning,
        test_clock_id = excluded.test_clock_id, updated_at = excluded.updated_at,
        state_version = excluded.state_version, discount = excluded.discount
    WHERE subscriptions.state_version < excluded.state_version
), drafts AS (
    SELECT * FROM unnest(
        CAST(%(event_ids)s AS text[]), CAST(%(event_subscriptions)s AS text[]),
        CAST(%(event_customers)s AS text[]), CAST(%(event_types)s AS text[]),
        CAST(%(event_data)s AS text[]), CAST(%(event_actors)s AS text[]),
        CAST(%(event_times)s AS timestamptz[])
    ) WITH ORDINALITY AS d(id, subscription_id, customer_id, type, data, actor, occurred_at, ord)
), written AS (
    INSERT INTO events (id, subscription_id, customer_id, type, data, actor, occurred_at,
                        created_at)
    SELECT id, subscription_id, customer_id, type, CAST(data AS json), actor, occurred_at, %(now)s
    FROM drafts ORDER BY ord
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), targets AS (
    SELECT d.ord, 0 AS lane_kind, e.created_at AS registered, e.id AS target, d.id AS event_id
    FROM drafts d
    JOIN written w ON w.id = d.id
    JOIN webhook_endpoints e ON NOT e.disabled AND e.created_at <= %(now)s
    WHERE EXISTS (
        SELECT FROM json_array_elements_text(e.events) AS p(pattern)
        WHERE p.pattern = '*' OR p.pattern = d.type
           OR (right(p.pattern, 2) = '.*'
               AND starts_with(d.type, left(p.pattern, -1)))
    )
    UNION ALL
    SELECT d.ord, 1, NULL, %(email_lane)s, d.id
    FROM drafts d
    JOIN written w ON w.id = d.id
    WHERE d.type = ANY(CAST(%(email_types)s AS text[]))
), queued AS (
    INSERT INTO notification_outbox (subscription_id, target, event_id, attempts,
                                     next_attempt_at, created_at)
    SELECT %(id)s, target, event_id, 0, %(now)s, %(now)s
    FROM targets ORDER BY ord, lane_kind, registered, target
    ON CONFLICT DO NOTHING
    RETURNING target, event_id
), revoked AS (
    DELETE FROM entitlements
    WHERE CAST(%(grants)s AS boolean) AND subscription_id = %(id)s
      AND NOT (feature = ANY(CAST(%(features)s AS text[])))
), granted AS (
    INSERT INTO entitlements
        (customer_id, feature, subscription_id, plan_id, active_until, granted_at)
    SELECT %(customer_id)s, f, %(id)s, %(grant_plan_id)s, %(active_until)s, %(now)s
    FROM unnest(CAST(%(features)s AS text[])) AS f
    WHERE CAST(%(grants)s AS boolean)
    ON CONFLICT (subscription_id, feature)
    DO UPDATE SET plan_id = excluded.plan_id, active_until = excluded.active_until
), invoices_moved AS (
    UPDATE invoices AS i SET status = s.status
    FROM unnest(CAST(%(invoice_ids)s AS text[]), CAST(%(invoice_statuses)s AS text[]))
        AS s(id, status)
    WHERE i.id = s.id AND i.status = 'open'
)
SELECT target, event_id FROM queued
"""
)

_EMAIL_TYPES = sorted(EMAIL_TEMPLATES)


async def write_projection(
    db: AsyncConnection | AsyncSession, req: SyncRequest, now: datetime
) -> list[tuple[str, str, str]]:
    """Write `req` (safe to repeat: versions guard the row, ids guard the events). Returns
    the deliveries queued (subscription, target, event id): only for events this call
    inserted, so a repeated call queues nothing twice."""
    view, events, grant = req.subscription, req.events, req.entitlements
    params: dict[str, Any] = {
        "id": view.id,
        "customer_id": view.customer_id,
        "plan_id": view.plan_id,
        "status": str(view.status),
        "current_period_start": view.current_period_start,
        "current_period_end": view.current_period_end,
        "billing_cycle_anchor": view.billing_cycle_anchor,
        "trial_end": view.trial_end,
        "cancel_at_period_end": view.cancel_at_period_end,
        "canceled_at": view.canceled_at,
        "pause": view.pause.model_dump_json() if view.pause else None,
        "pending_change": view.pending_change.model_dump_json() if view.pending_change else None,
        "latest_invoice_id": view.latest_invoice_id,
        "dunning": view.dunning.model_dump_json(),
        "test_clock_id": view.test_clock_id,
        "created_at": view.created_at,
        "state_version": view.state_version,
        "discount": view.discount.model_dump_json() if view.discount else None,
        "now": now,
        "event_ids": [e.id for e in events],
        "event_subscriptions": [e.subscription_id for e in events],
        "event_customers": [e.customer_id for e in events],
        "event_types": [e.type for e in events],
        "event_data": [json.dumps(e.data) for e in events],
        "event_actors": [e.actor for e in events],
        "event_times": [e.occurred_at for e in events],
        "email_lane": EMAIL_LANE,
        "email_types": _EMAIL_TYPES,
        "grants": grant is not None,
        "features": distinct_features(grant.features) if grant else [],
        "grant_plan_id": grant.plan_id if grant else None,
        "active_until": grant.active_until if grant else None,
        "invoice_ids": list(req.invoice_status),
        "invoice_statuses": list(req.invoice_status.values()),
    }
    rows = await fetch_all(db, _PROJECT, params)
    return [(view.id, row["target"], row["event_id"]) for row in rows]
