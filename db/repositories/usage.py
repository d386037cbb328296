"""Usage in PostgreSQL: who meters what, writing a batch of events with their aggregates,
and reading a period's aggregate.

A batch is written by one statement (atomic without a transaction, one round trip): the
events go in with `ON CONFLICT (customer_id, transaction_id) DO NOTHING`, and only the rows
that statement inserted feed the aggregates, so an event sent twice — in one batch, in two
batches, or in two batches racing each other (the second insert waits for the first to
commit, then skips) — counts once. Each (subscription, meter, period) aggregate is folded
forward in an upsert (sum, count and unique_count add a delta; max keeps the greater; last
keeps the later (timestamp, transaction id)); `unique_count` first inserts the values into
`usage_unique_values` and counts only those that were new. An aggregate whose period was
closed (invoiced) meanwhile is left alone, and the statement says which ones those were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from db.driver import compact, fetch_all
from domain.usage_batch import Contribution, Draft

Db = AsyncConnection | AsyncSession

# Which subscriptions meter what, for a batch's customers: one row per (customer,
# subscription, meter) — a customer with no metering subscription has one row of NULLs,
# an unknown one `known = false`. A subscription meters the meters of its metered items
# and those of its items' limited features (every plan of `subscription_items`; the items
# share one billing period, so the plan of `s.plan_id` gives it). `periods`: the
# meter's aggregates still open, and those of the current billing period, open or
# closed, as JSON [start, end, closed] (`domain.usage.period_of`).
_RESOLVE = compact(
    """
WITH c AS (SELECT DISTINCT unnest(CAST(%(customers)s AS text[])) AS id)
SELECT c.id AS customer_id, cu.id IS NOT NULL AS known, s.id AS subscription_id,
       s.current_period_start, s.current_period_end, s.billing_cycle_anchor,
       p.interval, p.interval_count, tc.frozen_time AS clock_time,
       m.id AS meter_id, m.event_name, m.aggregation, m.value_property, m.unique_property,
       ARRAY(SELECT l.feature FROM plan_feature_limits l JOIN subscription_items i
             ON i.plan_id = l.plan_id AND i.subscription_id = s.id
             WHERE l.meter_id = m.id ORDER BY l.feature, l.usage_limit) AS limit_features,
       ARRAY(SELECT l.usage_limit FROM plan_feature_limits l JOIN subscription_items i
             ON i.plan_id = l.plan_id AND i.subscription_id = s.id
             WHERE l.meter_id = m.id ORDER BY l.feature, l.usage_limit) AS limit_values,
       ARRAY(SELECT json_build_array(a.period_start, a.period_end, a.closed_at IS NOT NULL)
             FROM usage_aggregates a
             WHERE a.subscription_id = s.id AND a.meter_id = m.id
               AND (a.closed_at IS NULL OR a.period_end > s.current_period_start)
             ORDER BY a.period_start) AS periods
FROM c
LEFT JOIN customers cu ON cu.id = c.id
LEFT JOIN subscriptions s
       ON s.customer_id = c.id AND s.status IN ('trialing', 'active', 'past_due')
LEFT JOIN plans p ON p.id = s.plan_id
LEFT JOIN test_clocks tc ON tc.id = s.test_clock_id
LEFT JOIN LATERAL (
    SELECT ip.meter_id AS id FROM subscription_items i JOIN plans ip ON ip.id = i.plan_id
    WHERE i.subscription_id = s.id AND ip.usage_type = 'metered'
    UNION SELECT l.meter_id FROM subscription_items i
    JOIN plan_feature_limits l ON l.plan_id = i.plan_id WHERE i.subscription_id = s.id
) used ON true
LEFT JOIN meters m ON m.id = used.id
ORDER BY c.id, s.id, m.id
"""
)


async def resolve(db: Db, customer_ids: list[str]) -> list[dict[str, Any]]:
    return await fetch_all(db, _RESOLVE, {"customers": customer_ids})


_WRITE = compact(
    """
WITH drafts AS (
    SELECT * FROM json_to_recordset(CAST(%(events)s AS json))
        AS d(id text, customer_id text, transaction_id text, event_name text,
             ts timestamptz, properties json)
), ins AS (
    INSERT INTO usage_events
        (id, customer_id, transaction_id, event_name, timestamp, properties, created_at)
    SELECT id, customer_id, transaction_id, event_name, ts, properties, %(now)s
    FROM drafts ORDER BY customer_id, transaction_id
    ON CONFLICT (customer_id, transaction_id) DO NOTHING
    RETURNING id
), contrib AS (
    SELECT c.*, d.customer_id, d.ts, d.transaction_id AS tx
    FROM json_to_recordset(CAST(%(contributions)s AS json))
        AS c(event_id text, subscription_id text, meter_id text, period_start timestamptz,
             period_end timestamptz, aggregation text, quantity numeric, uniq text)
    JOIN ins ON ins.id = c.event_id
    JOIN drafts d ON d.id = c.event_id
), fresh AS (
    INSERT INTO usage_unique_values (subscription_id, meter_id, period_start, value)
    SELECT DISTINCT subscription_id, meter_id, period_start, uniq FROM contrib
    WHERE uniq IS NOT NULL ORDER BY 1, 2, 3, 4
    ON CONFLICT DO NOTHING
    RETURNING subscription_id, meter_id, period_start
), grouped AS (
    SELECT c.subscription_id, c.meter_id, c.period_start,
           max(c.period_end) AS period_end, max(c.customer_id) AS customer_id,
           max(c.aggregation) AS aggregation, count(*) AS n,
           CASE max(c.aggregation)
               WHEN 'sum' THEN sum(c.quantity)
               WHEN 'count' THEN count(*)
               WHEN 'max' THEN max(c.quantity)
               WHEN 'last' THEN (array_agg(c.quantity ORDER BY c.ts DESC, c.tx DESC)
                                 FILTER (WHERE c.aggregation = 'last'))[1]
               ELSE (SELECT count(*) FROM fresh f
                     WHERE f.subscription_id = c.subscription_id
                       AND f.meter_id = c.meter_id AND f.period_start = c.period_start)
           END AS quantity,
           max(c.ts) FILTER (WHERE c.aggregation = 'last') AS last_at,
           (array_agg(c.tx ORDER BY c.ts DESC, c.tx DESC)
            FILTER (WHERE c.aggregation = 'last'))[1] AS last_transaction
    FROM contrib c GROUP BY c.subscription_id, c.meter_id, c.period_start
), agg AS (
    INSERT INTO usage_aggregates AS a (subscription_id, meter_id, period_start, period_end,
        customer_id, aggregation, quantity, events, last_at, last_transaction, updated_at)
    SELECT subscription_id, meter_id, period_start, period_end, customer_id, aggregation,
           quantity, n, last_at, last_transaction, %(now)s
    FROM grouped ORDER BY subscription_id, meter_id, period_start
    ON CONFLICT (subscription_id, meter_id, period_start) DO UPDATE SET
        quantity = CASE a.aggregation
            WHEN 'max' THEN CASE WHEN a.events = 0 THEN excluded.quantity
                                 ELSE greatest(a.quantity, excluded.quantity) END
            WHEN 'last' THEN CASE
                WHEN a.last_at IS NULL OR (excluded.last_at, excluded.last_transaction)
                                          > (a.last_at, a.last_transaction)
                THEN excluded.quantity ELSE a.quantity END
            ELSE a.quantity + excluded.quantity END,
        last_at = CASE WHEN a.last_at IS NULL OR (excluded.last_at, excluded.last_transaction)
                                                 > (a.last_at, a.last_transaction)
                       THEN excluded.last_at ELSE a.last_at END,
        last_transaction = CASE
            WHEN a.last_at IS NULL OR (excluded.last_at, excluded.last_transaction)
                                      > (a.last_at, a.last_transaction)
            THEN excluded.last_transaction ELSE a.last_transaction END,
        events = a.events + excluded.events,
        updated_at = excluded.updated_at
    WHERE a.closed_at IS NULL
    RETURNING subscription_id, meter_id, period_start, quantity
)
SELECT ARRAY(SELECT id FROM ins) AS inserted,
       ARRAY(SELECT subscription_id FROM agg) AS subscriptions,
       ARRAY(SELECT meter_id FROM agg) AS meters,
       ARRAY(SELECT period_start FROM agg) AS starts,
       ARRAY(SELECT quantity FROM agg) AS quantities
"""
)


GroupKey = tuple[str, str, datetime]


@dataclass(frozen=True)
class Written:
    inserted: set[str]  # event ids this statement inserted (the others were duplicates)
    quantities: dict[GroupKey, Decimal]  # the aggregates it updated, after the update


async def write(
    db: Db, drafts: list[Draft], contributions: list[Contribution], now: datetime
) -> Written:
    # Two JSON parameters rather than one array per column: psycopg dumps a list element
    # by element in Python, json.dumps does the whole batch in C.
    events = [
        {
            "id": d.id,
            "customer_id": d.customer_id,
            "transaction_id": d.transaction_id,
            "event_name": d.event_name,
            "ts": d.timestamp.isoformat(),
            "properties": d.properties,
        }
        for d in drafts
    ]
    periods: dict[datetime, str] = {}  # a batch names few periods: format each once

    def text(at: datetime) -> str:
        found = periods.get(at)
        if found is None:
            found = periods[at] = at.isoformat()
        return found

    parts = [
        {
            "event_id": c.event_id,
            "subscription_id": c.subscription_id,
            "meter_id": c.meter_id,
            "period_start": text(c.period_start),
            "period_end": text(c.period_end),
            "aggregation": c.aggregation.value,
            "quantity": str(c.quantity),
            "uniq": c.unique,
        }
        for c in contributions
    ]
    params = {"now": now, "events": json.dumps(events), "contributions": json.dumps(parts)}
    (row,) = await fetch_all(db, _WRITE, params)
    quantities = {
        (sub, meter, start): quantity
        for sub, meter, start, quantity in zip(
            row["subscriptions"], row["meters"], row["starts"], row["quantities"], strict=True
        )
    }
    return Written(set(row["inserted"]), quantities)


_FORGET = "DELETE FROM usage_events WHERE id = ANY(CAST(%(ids)s AS text[]))"


async def forget(db: Db, event_ids: list[str]) -> None:
    """Remove events that were stored but could not count (their period closed while the
    batch was written), so that sending them again is not taken for a duplicate."""
    await fetch_all(db, _FORGET, {"ids": event_ids})


_EXISTING = compact(
    """
SELECT id FROM usage_events WHERE customer_id = %(customer_id)s
AND transaction_id = %(transaction_id)s
"""
)


async def existing_id(db: Db, customer_id: str, transaction_id: str) -> str | None:
    params = {"customer_id": customer_id, "transaction_id": transaction_id}
    rows = await fetch_all(db, _EXISTING, params)
    return str(rows[0]["id"]) if rows else None


# The metered items of a subscription (through `subscription_items`) with their current
# period's aggregate, its latest stretch when a plan change split the period (one row of
# NULL plan for a subscription without one; no row for an unknown subscription).
_CURRENT = compact(
    """
SELECT s.id AS subscription_id, s.status, s.current_period_start, s.current_period_end,
       p.id AS plan_id, p.meter_id, p.amount, p.package_size, u.period_start, u.quantity
FROM subscriptions s
LEFT JOIN LATERAL (
    SELECT mp.id, mp.meter_id, mp.amount, mp.package_size, mi.position
    FROM subscription_items mi JOIN plans mp ON mp.id = mi.plan_id
    WHERE mi.subscription_id = s.id AND mp.usage_type = 'metered'
) p ON true
LEFT JOIN LATERAL (
    SELECT a.period_start, a.quantity FROM usage_aggregates a
    WHERE a.subscription_id = s.id AND a.meter_id = p.meter_id
      AND a.period_start >= s.current_period_start AND a.period_start < s.current_period_end
    ORDER BY a.period_start DESC LIMIT 1
) u ON true
WHERE s.id = %(id)s
ORDER BY p.position
"""
)


async def current_usage(db: Db, subscription_id: str) -> list[dict[str, Any]]:
    return await fetch_all(db, _CURRENT, {"id": subscription_id})


# The aggregates of some of a subscription's (meter, period start) pairs, as they stand: a
# pair without one yet reads 0 (with the meter's name; no row for an unknown meter).
_SO_FAR = compact(
    """
SELECT k.meter_id, k.period_start, m.name AS meter_name,
       coalesce(a.quantity, 0) AS quantity, a.closed_at
FROM unnest(CAST(%(meters)s AS text[]), CAST(%(starts)s AS timestamptz[]))
     AS k(meter_id, period_start)
JOIN meters m ON m.id = k.meter_id
LEFT JOIN usage_aggregates a ON a.subscription_id = %(id)s AND a.meter_id = k.meter_id
     AND a.period_start = k.period_start
"""
)


async def aggregates_so_far(
    db: Db, subscription_id: str, keys: list[tuple[str, datetime]]
) -> dict[tuple[str, datetime], dict[str, Any]]:
    """The aggregate of each (meter, period start) of `keys`, by that pair."""
    params = {
        "id": subscription_id,
        "meters": [meter for meter, _ in keys],
        "starts": [start for _, start in keys],
    }
    rows = await fetch_all(db, _SO_FAR, params)
    return {(row["meter_id"], row["period_start"]): row for row in rows}


# Claim one (subscription, meter, period) aggregate for an invoice, creating it empty when no
# event came: a second invoice cannot take it, the same invoice gets it again (a retried
# activity), and `close` freezes it (coalesce: the first close stands).
_CLAIM = compact(
    """
INSERT INTO usage_aggregates AS a (subscription_id, meter_id, period_start, period_end,
    customer_id, aggregation, quantity, events, invoice_id, closed_at, updated_at)
SELECT %(subscription_id)s, m.id, %(period_start)s, %(period_end)s, %(customer_id)s,
       m.aggregation, 0, 0, %(invoice_id)s, %(closed_at)s, %(now)s
FROM meters m WHERE m.id = %(meter_id)s
ON CONFLICT (subscription_id, meter_id, period_start) DO UPDATE SET
    invoice_id = excluded.invoice_id,
    closed_at = coalesce(a.closed_at, excluded.closed_at),
    period_end = CASE WHEN a.closed_at IS NULL THEN excluded.period_end ELSE a.period_end END,
    updated_at = excluded.updated_at
WHERE a.invoice_id IS NULL OR a.invoice_id = excluded.invoice_id
RETURNING quantity, period_end, closed_at, invoice_id,
    (SELECT name FROM meters WHERE id = a.meter_id) AS meter_name
"""
)


async def claim_period(
    db: Db,
    *,
    subscription_id: str,
    customer_id: str,
    meter_id: str,
    period_start: datetime,
    period_end: datetime,
    invoice_id: str,
    close_at: datetime | None,
    now: datetime,
) -> dict[str, Any] | None:
    """The aggregate claimed for `invoice_id` (None: no such meter, or another invoice has
    the period)."""
    params = {
        "subscription_id": subscription_id,
        "customer_id": customer_id,
        "meter_id": meter_id,
        "period_start": period_start,
        "period_end": period_end,
        "invoice_id": invoice_id,
        "closed_at": close_at,
        "now": now,
    }
    rows = await fetch_all(db, _CLAIM, params)
    return rows[0] if rows else None
