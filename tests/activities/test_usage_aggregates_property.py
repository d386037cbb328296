"""The aggregates PostgreSQL keeps at ingestion equal the domain's definition of each
aggregation, whatever the order events arrive in, however they are split into batches and
however often they are sent again (hypothesis, through the real ingestion and SQL)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.usage_ingest import Ingestion
from db.engine import session_factory
from db.usage_sink import PostgresUsageSink
from domain.usage import Aggregation, MeterSpec, UsageEvent, aggregate
from domain.usage_batch import EventIn

START = datetime(2027, 3, 1, tzinfo=UTC)
METERS = {
    "meter_p_sum": MeterSpec("call", Aggregation.SUM, value_property="v"),
    "meter_p_count": MeterSpec("call", Aggregation.COUNT),
    "meter_p_max": MeterSpec("call", Aggregation.MAX, value_property="v"),
    "meter_p_last": MeterSpec("call", Aggregation.LAST, value_property="v"),
    "meter_p_unique": MeterSpec("call", Aggregation.UNIQUE_COUNT, unique_property="u"),
}

values = st.one_of(st.integers(0, 10**6), st.decimals(0, 10**4, places=2, allow_nan=False).map(str))
event_lists = st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 10_000), values, st.integers(0, 5)),
    min_size=1,
    max_size=25,
    unique_by=lambda e: e[0],
)


async def _setup(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for meter_id, spec in METERS.items():
            await conn.execute(
                text("INSERT INTO meters VALUES (:id, :id, 'call', :agg, :v, :u, now())"),
                {
                    "id": meter_id,
                    "agg": spec.aggregation.value,
                    "v": spec.value_property,
                    "u": spec.unique_property,
                },
            )
            await conn.execute(
                text("INSERT INTO plan_feature_limits VALUES ('plan_p', :f, :m, 1000000000, 0)"),
                {"f": meter_id, "m": meter_id},
            )
        await conn.execute(
            text(
                "INSERT INTO plans (id, name, amount, currency, interval, interval_count,"
                " trial_days, features, created_at) VALUES ('plan_p', 'P', 100, 'usd', 'month',"
                " 1, 0, '[]', now())"
            )
        )


async def _customer(engine: AsyncEngine) -> str:
    suffix = uuid.uuid4().hex[:10]
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO customers (id, email, created_at) VALUES (:c, 'p@x.y', now())"),
            {"c": f"cus_{suffix}"},
        )
        await conn.execute(
            text(
                "INSERT INTO subscriptions (id, customer_id, plan_id, status,"
                " current_period_start, current_period_end, billing_cycle_anchor,"
                " cancel_at_period_end, dunning, created_at, updated_at, state_version)"
                " VALUES (:s, :c, 'plan_p', 'active', :start, :end, :start, false, '{}',"
                " now(), now(), 1)"
            ),
            {
                "s": f"sub_{suffix}",
                "c": f"cus_{suffix}",
                "start": START,
                "end": datetime(2027, 4, 1, tzinfo=UTC),
            },
        )
        await conn.execute(
            text(
                "INSERT INTO subscription_items (id, subscription_id, plan_id, quantity,"
                " position, created_at) VALUES (:i, :s, 'plan_p', 1, 0, now())"
            ),
            {"i": f"si_{suffix}", "s": f"sub_{suffix}"},
        )
    return suffix


async def test_sql_aggregates_match_the_domain(scratch: AsyncEngine) -> None:
    await _setup(scratch)
    sink = PostgresUsageSink(scratch.execution_options(isolation_level="AUTOCOMMIT"), 0)
    ingestion = Ingestion(sink, session_factory(scratch))
    now = START + timedelta(days=10)

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(event_lists, st.data())
    def check(raw: list[tuple[int, int, object, int]], data: st.DataObject) -> None:
        events = [
            UsageEvent(f"tx{tx}", START + timedelta(minutes=m), {"v": v, "u": f"user{u}"})
            for tx, m, v, u in raw
        ]
        # Sent in a random order, in random batches, with random copies, some concurrently.
        sent = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events)))))
        cuts = sorted(data.draw(st.lists(st.integers(0, len(sent)), max_size=4)))
        batches = [sent[a:b] for a, b in zip([0, *cuts], [*cuts, len(sent)], strict=True)]
        concurrent = data.draw(st.booleans())
        expected = {m: aggregate(spec, events) for m, spec in METERS.items()}
        asyncio.run_coroutine_threadsafe(
            _ingest_and_compare(scratch, ingestion, batches, concurrent, now, expected), loop
        ).result()

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(check)


async def _ingest_and_compare(
    engine: AsyncEngine,
    ingestion: Ingestion,
    batches: list[list[UsageEvent]],
    concurrent: bool,
    now: datetime,
    expected: dict[str, Decimal],
) -> None:
    suffix = await _customer(engine)

    async def send(batch: list[UsageEvent]) -> None:
        ins = [
            (i, EventIn(e.transaction_id, f"cus_{suffix}", "call", e.timestamp, e.properties))
            for i, e in enumerate(batch)
        ]
        outcome = await ingestion.ingest(ins, now)
        assert outcome.rejected == []

    if concurrent:
        await asyncio.gather(*(send(b) for b in batches if b))
    else:
        for batch in batches:
            if batch:
                await send(batch)
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT meter_id, quantity FROM usage_aggregates WHERE subscription_id = :s"),
            {"s": f"sub_{suffix}"},
        )
        got = {str(r[0]): Decimal(r[1]) for r in rows}
    assert got == expected
