"""The usage line of a period, computed idempotently from the running aggregate: drafted at
the period's end while late events still count, frozen by the closing call, the same line
for every call after that, never claimed by a second invoice; an event for a closed period
is refused and not stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.exceptions import ApplicationError

from activities.usage import UsageActivities
from api.ids import new_id
from api.usage_ingest import Ingestion
from db.engine import session_factory
from db.usage_sink import PostgresUsageSink
from domain.usage_batch import EventIn
from domain.usage_contracts import MeteredItem, UsageLinesRequest

_PERIOD = "UPDATE subscriptions SET current_period_start = '{start}', current_period_end = '{end}'"
MARCH, APRIL = datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC)


async def _seed(engine: AsyncEngine) -> None:
    """A metered plan (sum of `tokens`, 200 per started 1,000) and one customer subscribed
    to it (its one item), in its April period (March ended)."""
    async with engine.begin() as conn:
        for sql in (
            "INSERT INTO meters VALUES ('meter_t', 'Tokens', 'api_call', 'sum', 'tokens',"
            " NULL, now())",
            "INSERT INTO plans (id, name, amount, currency, interval, interval_count, trial_days,"
            " features, created_at, usage_type, meter_id, package_size) VALUES ('plan_m', 'M',"
            " 200, 'usd', 'month', 1, 0, '[]', now(), 'metered', 'meter_t', 1000)",
            "INSERT INTO customers (id, email, created_at) VALUES ('cus_1', 'a@b.c', now())",
            "INSERT INTO subscriptions (id, customer_id, plan_id, status, current_period_start,"
            " current_period_end, billing_cycle_anchor, cancel_at_period_end, dunning,"
            " created_at, updated_at, state_version) VALUES ('sub_1', 'cus_1', 'plan_m',"
            " 'active', '2027-04-01Z', '2027-05-01Z', '2027-03-01Z', false, '{}', now(),"
            " now(), 1)",
            "INSERT INTO subscription_items (id, subscription_id, plan_id, quantity, position,"
            " created_at) VALUES ('si_1', 'sub_1', 'plan_m', 1, 0, now())",
        ):
            await conn.execute(text(sql))


def _event(tx: str, at: datetime, tokens: int) -> EventIn:
    return EventIn(tx, "cus_1", "api_call", at, {"tokens": tokens})


def _request(invoice_id: str, close: bool) -> UsageLinesRequest:
    item = MeteredItem(plan_id="plan_m", meter_id="meter_t", amount=200, package_size=1000)
    return UsageLinesRequest(
        subscription_id="sub_1",
        customer_id="cus_1",
        invoice_id=invoice_id,
        period_start=MARCH,
        period_end=APRIL,
        items=[item],
        close=close,
    )


async def _ingest(ingestion: Ingestion, *events: EventIn) -> list[str]:
    """The codes of the rejected events (accepted ones are stored)."""
    outcome = await ingestion.ingest(list(enumerate(events)), APRIL + timedelta(minutes=1))
    return [r.code for r in outcome.rejected]


async def test_period_line_is_claimed_frozen_and_repeatable(scratch: AsyncEngine) -> None:
    await _seed(scratch)
    sink = PostgresUsageSink(scratch.execution_options(isolation_level="AUTOCOMMIT"), 0)
    ingestion = Ingestion(sink, session_factory(scratch))
    usage = UsageActivities(scratch)
    invoice = new_id("in")
    late = APRIL - timedelta(hours=1)

    # March's usage: its aggregate exists (the event came while March was current).
    async with scratch.begin() as conn:
        await conn.execute(text(_PERIOD.format(start="2027-03-01Z", end="2027-04-01Z")))
    assert await _ingest(ingestion, _event("a", MARCH + timedelta(days=3), 1500)) == []
    async with scratch.begin() as conn:
        await conn.execute(text(_PERIOD.format(start="2027-04-01Z", end="2027-05-01Z")))

    (draft,) = await usage.lines(_request(invoice, close=False), APRIL)
    assert (draft.quantity, draft.packages, draft.amount, draft.closed) == ("1500", 2, 400, False)
    assert draft.description == "Tokens: 1500, 2 package(s) of 1000"

    # In the grace: a late event for March still counts, and the draft is priced again.
    assert await _ingest(ingestion, _event("b", late, 600)) == []
    assert await _ingest(ingestion, _event("b", late, 600)) == [], "a duplicate, not counted"
    (draft,) = await usage.lines(_request(invoice, close=False), APRIL)
    assert (draft.quantity, draft.amount) == ("2100", 600)

    # The grace ends: the closing call freezes March; every later call answers the same.
    (final,) = await usage.lines(_request(invoice, close=True), APRIL + timedelta(hours=1))
    assert (final.quantity, final.amount, final.closed) == ("2100", 600, True)
    assert await _ingest(ingestion, _event("c", late, 5000)) == ["period_closed"]
    again = await usage.lines(_request(invoice, close=True), APRIL + timedelta(hours=2))
    assert again == [final], "a retried activity prices the frozen aggregate again"

    async with AsyncSession(scratch) as session:
        count = text("SELECT count(*) FROM usage_events WHERE customer_id = 'cus_1'")
        stored = (await session.execute(count)).scalar_one()
    assert stored == 2, "the refused event is not stored (it may be sent again elsewhere)"

    with pytest.raises(ApplicationError) as err:
        await usage.lines(_request(new_id("in"), close=True), APRIL)
    assert err.value.type == "usage_period_taken" and err.value.non_retryable


async def test_period_without_events_bills_nothing_and_closes(scratch: AsyncEngine) -> None:
    await _seed(scratch)
    sink = PostgresUsageSink(scratch.execution_options(isolation_level="AUTOCOMMIT"), 0)
    ingestion = Ingestion(sink, session_factory(scratch))
    usage = UsageActivities(scratch)
    (draft,) = await usage.lines(_request(new_id("in"), close=False), APRIL)
    assert (draft.quantity, draft.packages, draft.amount) == ("0", 0, 0)
    # The draft opened March's aggregate: a late event in the grace counts into it.
    assert await _ingest(ingestion, _event("late", APRIL - timedelta(seconds=1), 1)) == []
    assert await _ingest(ingestion, _event("apr", APRIL + timedelta(seconds=1), 7)) == []
    async with scratch.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT period_start, quantity FROM usage_aggregates"
                    " WHERE subscription_id = 'sub_1' ORDER BY period_start"
                )
            )
        ).all()
    assert [(r[0], int(r[1])) for r in rows] == [(MARCH, 1), (APRIL, 7)]


async def test_period_closed_while_an_event_is_written(scratch: AsyncEngine) -> None:
    """The lookup said March was open (a cached one, as if the close landed between lookup
    and write): the write skips the closed aggregate, and the event is refused and removed."""
    await _seed(scratch)
    sink = PostgresUsageSink(scratch.execution_options(isolation_level="AUTOCOMMIT"), 600)
    ingestion = Ingestion(sink, session_factory(scratch))
    usage = UsageActivities(scratch)
    invoice = new_id("in")
    await usage.lines(_request(invoice, close=False), APRIL)
    late = APRIL - timedelta(minutes=5)
    assert await _ingest(ingestion, _event("x", late, 10)) == []  # caches "March is open"
    (final,) = await usage.lines(_request(invoice, close=True), APRIL + timedelta(hours=1))
    assert final.quantity == "10"
    assert await _ingest(ingestion, _event("y", late, 10)) == ["period_closed"]
    async with scratch.connect() as conn:
        ids = (await conn.execute(text("SELECT transaction_id FROM usage_events"))).scalars()
        assert sorted(ids) == ["x"]
    assert await usage.lines(_request(invoice, close=True), APRIL) == [final]


async def test_plan_change_bills_usage_up_to_the_change(scratch: AsyncEngine) -> None:
    """The old metered item's usage is billed and closed at the change (April 11); events
    after it, on the same meter, form a stretch of their own for the rest of April."""
    await _seed(scratch)
    sink = PostgresUsageSink(scratch.execution_options(isolation_level="AUTOCOMMIT"), 0)
    ingestion = Ingestion(sink, session_factory(scratch))
    usage = UsageActivities(scratch)
    change = datetime(2027, 4, 11, tzinfo=UTC)

    async def send(tx: str, at: datetime, tokens: int) -> list[str]:
        outcome = await ingestion.ingest([(0, _event(tx, at, tokens))], change + timedelta(hours=1))
        return [r.code for r in outcome.rejected]

    assert await send("before", change - timedelta(days=1), 1200) == []
    request = _request(new_id("in"), close=True).model_copy(
        update={"period_start": APRIL, "period_end": change}
    )
    (billed,) = await usage.lines(request, change)
    assert (billed.quantity, billed.amount, billed.period_end) == ("1200", 400, change)
    assert await send("late", change - timedelta(hours=1), 5) == ["period_closed"]
    assert await send("after", change + timedelta(minutes=30), 300) == []
    async with scratch.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT period_start, period_end, quantity, closed_at IS NOT NULL"
                    " FROM usage_aggregates ORDER BY period_start"
                )
            )
        ).all()
    assert [(r[0], r[1], int(r[2]), r[3]) for r in rows] == [
        (APRIL, change, 1200, True),
        (change, datetime(2027, 5, 1, tzinfo=UTC), 300, False),
    ]
