"""Writing a projection of a subscription: read model, timeline, entitlements, invoice
statuses and the deliveries of new events, in one statement.

The projection activity writes every projection the workflow makes (on an autocommit
connection: one round trip, as atomic as a transaction); the API writes the first one of a
subscription that starts with a trial (see `workflows/projection.py`) in its own transaction,
beside the start record.

What the statement does, as one snapshot:

* upserts the read model unless a newer state (higher `state_version`) is already stored,
  and with it the subscription's items when the view lists them (a run from before items
  lists none: its one item is the migration's);
* inserts the events in timeline order (`seq` follows it), skipping ids already written;
* queues a delivery for each event *it* inserted (so a repeated projection — a retried
  activity, a replayed task — queues nothing twice): one per enabled webhook endpoint that
  was registered before now (real time) and wants the event's type (the rule of
  `db.repositories.outbox.endpoint_wants`), and one for the customer's email when the type
  has a template. A lane's rows are inserted in timeline order, which is the order they go out;
* when the request grants entitlements, makes the subscription's rows exactly those
  features (each once: a plan stored with a repeated feature, from before the API refused
  one, would otherwise make the upsert touch a row twice and fail for ever);
* moves the invoices named in `invoice_status` out of `open`.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import JSON
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from db.delivery_tables import NotificationOutbox
from db.driver import columns, compact, fetch_all
from db.models import Entitlement, Event, Subscription
from db.repositories.outbox import endpoint_wants
from domain.contracts import SubscriptionView, SyncRequest
from domain.notifications import EMAIL_LANE, EMAIL_TEMPLATES
from domain.plans import distinct_features

_SUBSCRIPTIONS = Subscription.__table__  # type: ignore[attr-defined]
# Every column of the read model, as the table model declares it, from the view's field of
# the same name (JSON columns as the JSON of their model; `updated_at` is the write's time).
_VIEW_COLUMNS: list[str] = [c.name for c in _SUBSCRIPTIONS.c]
_JSON_COLUMNS = frozenset(c.name for c in _SUBSCRIPTIONS.c if isinstance(c.type, JSON))
# Fixed when a subscription is created: an update leaves them out, which also keeps the
# statement under psycopg's parse cache (tests/activities/test_driver_statements.py).
_KEPT_ON_UPDATE = frozenset({"id", "created_at", "customer_id", "test_clock_id"})


def _placeholder(column: str) -> str:
    if column == "updated_at":
        return "%(now)s"
    return f"CAST(%({column})s AS json)" if column in _JSON_COLUMNS else f"%({column})s"


# Upserts the read model unless a newer state (higher `state_version`) is already stored.
_UPSERT_VIEW = (
    f"INSERT INTO subscriptions ({', '.join(_VIEW_COLUMNS)})"
    f" VALUES ({', '.join(_placeholder(c) for c in _VIEW_COLUMNS)})"
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _VIEW_COLUMNS if c not in _KEPT_ON_UPDATE)
    + " WHERE subscriptions.state_version < excluded.state_version"
)


def _view_params(view: SubscriptionView) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for column in _VIEW_COLUMNS:
        if column == "updated_at":
            continue
        value = getattr(view, column)
        if column in _JSON_COLUMNS:
            value = value.model_dump_json() if value is not None else None
        elif isinstance(value, Enum):
            value = value.value
        params[column] = value
    return params


# What the other inserts write, in the order of their values.
_EVENT_COLUMNS = columns(
    Event,
    "id",
    "subscription_id",
    "customer_id",
    "type",
    "data",
    "actor",
    "occurred_at",
    "created_at",
)
_OUTBOX_COLUMNS = columns(
    NotificationOutbox,
    "subscription_id",
    "target",
    "event_id",
    "attempts",
    "next_attempt_at",
    "created_at",
)
_GRANT_COLUMNS = columns(
    Entitlement,
    "customer_id",
    "feature",
    "subscription_id",
    "plan_id",
    "active_until",
    "granted_at",
)

_PROJECT = compact(
    f"""
WITH view AS (
    {_UPSERT_VIEW} RETURNING id
), sd AS (
    DELETE FROM subscription_items WHERE subscription_id = %(id)s
      AND id <> ALL(CAST(%(si)s AS text[])) AND EXISTS (SELECT FROM view)
), ss AS (
    INSERT INTO subscription_items
    SELECT * FROM json_populate_recordset(NULL::subscription_items, CAST(%(items)s AS json))
    WHERE EXISTS (SELECT FROM view)
    ON CONFLICT (id) DO UPDATE SET quantity = excluded.quantity, position = excluded.position
), drafts AS (
    SELECT * FROM unnest(
        CAST(%(event_ids)s AS text[]), CAST(%(event_subscriptions)s AS text[]),
        CAST(%(event_customers)s AS text[]), CAST(%(event_types)s AS text[]),
        CAST(%(event_data)s AS text[]), CAST(%(event_actors)s AS text[]),
        CAST(%(event_times)s AS timestamptz[])
    ) WITH ORDINALITY AS d(id, subscription_id, customer_id, type, data, actor, occurred_at, ord)
), written AS (
    INSERT INTO events ({_EVENT_COLUMNS})
    SELECT id, subscription_id, customer_id, type, CAST(data AS json), actor, occurred_at, %(now)s
    FROM drafts ORDER BY ord
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), targets AS (
    SELECT d.ord, 0 AS lane_kind, e.created_at AS registered, e.id AS target, d.id AS event_id
    FROM drafts d
    JOIN written w ON w.id = d.id
    JOIN webhook_endpoints e ON {endpoint_wants("d.type", "%(now)s")}
    UNION ALL
    SELECT d.ord, 1, NULL, %(email_lane)s, d.id
    FROM drafts d
    JOIN written w ON w.id = d.id
    WHERE d.type = ANY(CAST(%(email_types)s AS text[]))
), queued AS (
    INSERT INTO notification_outbox ({_OUTBOX_COLUMNS})
    SELECT %(id)s, target, event_id, 0, %(now)s, %(now)s
    FROM targets ORDER BY ord, lane_kind, registered, target
    ON CONFLICT DO NOTHING
    RETURNING target, event_id
), revoked AS (
    DELETE FROM entitlements
    WHERE CAST(%(grants)s AS boolean) AND subscription_id = %(id)s
      AND NOT (feature = ANY(CAST(%(features)s AS text[])))
), granted AS (
    INSERT INTO entitlements ({_GRANT_COLUMNS})
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
        **_view_params(view),
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
        # No items (a run from before items): nothing written, nothing deleted.
        "si": [item.id for item in view.items] if view.items else None,
        "items": _items_json(view, now) if view.items else None,
        "invoice_ids": list(req.invoice_status),
        "invoice_statuses": list(req.invoice_status.values()),
    }
    rows = await fetch_all(db, _PROJECT, params)
    return [(view.id, row["target"], row["event_id"]) for row in rows]


def _items_json(view: SubscriptionView, now: datetime) -> str:
    """The items as rows of `subscription_items` (every column: the statement inserts them
    whole); an item's id stays with its plan, so only quantity and position change."""
    return json.dumps(
        [
            {
                "id": item.id,
                "subscription_id": view.id,
                "plan_id": item.plan_id,
                "quantity": item.quantity,
                "position": position,
                "created_at": now.isoformat(),
            }
            for position, item in enumerate(view.items)
        ]
    )
