"""Usage aggregation, metered prices and limits: worked numbers and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import DomainError
from domain.periods import Interval
from domain.usage import (
    Aggregation,
    MeterSpec,
    Period,
    UsageEvent,
    aggregate,
    crossed,
    evaluate_limit,
    packages,
    parse_quantity,
    period_of,
    read,
    timestamp_problem,
    usage_amount,
)

SETTINGS = settings(max_examples=200, deadline=None)
T0 = datetime(2027, 3, 1, tzinfo=UTC)

SUM = MeterSpec("api_call", Aggregation.SUM, value_property="tokens")
COUNT = MeterSpec("api_call", Aggregation.COUNT)
MAX = MeterSpec("api_call", Aggregation.MAX, value_property="tokens")
LAST = MeterSpec("api_call", Aggregation.LAST, value_property="tokens")
UNIQUE = MeterSpec("api_call", Aggregation.UNIQUE_COUNT, unique_property="user")
METERS = (SUM, COUNT, MAX, LAST, UNIQUE)


def ev(tx: str, minutes: int, tokens: object = 1, user: object = "u") -> UsageEvent:
    return UsageEvent(tx, T0 + timedelta(minutes=minutes), {"tokens": tokens, "user": user})


WORKED = [
    ev("a", 0, 5, "ann"),
    ev("b", 10, "2.5", "bob"),
    ev("c", 5, 7, "ann"),
    ev("d", 20, 0.25, "cid"),
    ev("b", 30, 100, "zed"),  # a duplicate of "b": ignored, whatever it says
]


@pytest.mark.parametrize(
    ("meter", "expected"),
    [
        (SUM, Decimal("14.75")),  # 5 + 2.5 + 7 + 0.25
        (COUNT, Decimal(4)),
        (MAX, Decimal(7)),
        (LAST, Decimal("0.25")),  # d is the latest by timestamp, not by arrival
        (UNIQUE, Decimal(3)),  # ann, bob, cid
    ],
)
def test_worked_aggregations(meter: MeterSpec, expected: Decimal) -> None:
    assert aggregate(meter, WORKED) == expected


def test_decimals_are_exact() -> None:
    tenths = [ev(f"t{i}", i, 0.1) for i in range(10)]
    assert aggregate(SUM, tenths) == Decimal(1)
    assert packages(aggregate(SUM, tenths), 1) == 1


def test_last_breaks_timestamp_ties_by_transaction_id() -> None:
    tie = [ev("x", 0, 3), ev("y", 0, 9)]
    assert aggregate(LAST, tie) == aggregate(LAST, list(reversed(tie))) == Decimal(9)


def test_empty_period_is_zero() -> None:
    assert all(aggregate(m, []) == 0 for m in METERS)


@pytest.mark.parametrize(
    ("quantity", "size", "amount", "billed"),
    [
        (Decimal(0), 1, 25, 0),
        (Decimal(1), 1, 25, 25),
        (Decimal(1000), 1000, 200, 200),
        (Decimal(1001), 1000, 200, 400),  # a started package is a package
        (Decimal("0.001"), 1000, 200, 200),
        (Decimal("2500.5"), 1, 3, 2501 * 3),
        (Decimal(10) ** 14, 7, 1, -(-(10**14) // 7)),
    ],
)
def test_package_pricing(quantity: Decimal, size: int, amount: int, billed: int) -> None:
    assert usage_amount(quantity, size, amount) == billed


@pytest.mark.parametrize(
    "raw", [-1, "abc", None, True, float("nan"), float("inf"), "1e40", "0.0000000000001", [1]]
)
def test_invalid_values_are_refused(raw: object) -> None:
    with pytest.raises(DomainError) as err:
        parse_quantity(raw, "tokens")
    assert err.value.code == "invalid_property" and err.value.http_status == 422


def test_missing_property_is_refused_but_count_needs_none() -> None:
    with pytest.raises(DomainError, match=r"properties\.tokens is required"):
        read(SUM, {})
    with pytest.raises(DomainError, match=r"properties\.user is required"):
        read(UNIQUE, {"tokens": 1})
    assert read(COUNT, {}).quantity == 1
    assert read(UNIQUE, {"user": 7}).unique == read(UNIQUE, {"user": "7"}).unique == "7"


def test_meter_needs_the_right_property() -> None:
    with pytest.raises(ValueError, match="value_property is required"):
        MeterSpec("e", Aggregation.SUM)
    with pytest.raises(ValueError, match="unique_property is required"):
        MeterSpec("e", Aggregation.UNIQUE_COUNT)
    with pytest.raises(ValueError, match="value_property is not allowed"):
        MeterSpec("e", Aggregation.COUNT, value_property="x")


def test_limit_reached_at_the_limit_and_crossed_once() -> None:
    assert evaluate_limit(1000, Decimal(999)).reached is False
    status = evaluate_limit(1000, Decimal(1000))
    assert status.reached and status.remaining == 0
    assert evaluate_limit(1000, Decimal(1500)).remaining == 0
    assert evaluate_limit(1000, Decimal("250.5")).remaining == Decimal("749.5")
    assert crossed(1000, Decimal(999), Decimal(1000))
    assert not crossed(1000, Decimal(1000), Decimal(1001)), "already reached: no second event"
    assert not crossed(1000, Decimal(10), Decimal(999))


def test_timestamp_more_than_five_minutes_ahead_is_refused() -> None:
    now = T0
    assert timestamp_problem(now + timedelta(minutes=5), now) is None
    problem = timestamp_problem(now + timedelta(minutes=5, seconds=1), now)
    assert problem is not None and problem.code == "timestamp_in_future"


def test_period_of_an_event() -> None:
    current = Period(T0, datetime(2027, 4, 1, tzinfo=UTC))
    previous = Period(datetime(2027, 2, 1, tzinfo=UTC), T0)
    args = (datetime(2027, 1, 1, tzinfo=UTC), Interval.MONTH, 1)
    assert period_of(T0 + timedelta(days=3), current, [previous], *args) == current
    assert period_of(T0 - timedelta(seconds=1), current, [previous], *args) == previous
    assert period_of(T0 - timedelta(seconds=1), current, [], *args) is None, "closed"
    later = period_of(datetime(2027, 4, 1, 0, 1, tzinfo=UTC), current, [], *args)
    assert later == Period(datetime(2027, 4, 1, tzinfo=UTC), datetime(2027, 5, 1, tzinfo=UTC))


def test_period_of_after_a_stretch_was_closed_mid_period() -> None:
    """A plan change on March 11 billed March 1-11 and closed it: earlier events are
    refused, later ones start a stretch of their own that ends with the billing period."""
    current = Period(T0, datetime(2027, 4, 1, tzinfo=UTC))
    change = datetime(2027, 3, 11, tzinfo=UTC)
    billed = Period(T0, change)
    args = (T0, Interval.MONTH, 1)
    assert period_of(change - timedelta(seconds=1), current, [], *args, [billed]) is None
    after = period_of(change + timedelta(days=2), current, [], *args, [billed])
    assert after == Period(change, current.end)
    assert period_of(change, current, [after], *args, [billed]) == after


# --- properties -------------------------------------------------------------------------

values = st.one_of(
    st.integers(min_value=0, max_value=10**9),
    st.decimals(min_value=0, max_value=10**6, places=3).map(str),
)
events = st.lists(
    st.builds(
        lambda tx, minutes, tokens, user: ev(f"tx{tx}", minutes, tokens, f"u{user}"),
        st.integers(0, 40),
        st.integers(0, 60 * 24 * 30),
        values,
        st.integers(0, 8),
    ),
    max_size=40,
    unique_by=lambda e: e.transaction_id,
)


@SETTINGS
@given(events, st.randoms(use_true_random=False), st.sampled_from(METERS))
def test_order_of_arrival_does_not_matter(
    batch: list[UsageEvent], rng: object, meter: MeterSpec
) -> None:
    shuffled = list(batch)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert aggregate(meter, shuffled) == aggregate(meter, batch)


@SETTINGS
@given(events, st.data(), st.sampled_from(METERS))
def test_duplicates_do_not_count(
    batch: list[UsageEvent], data: st.DataObject, meter: MeterSpec
) -> None:
    resent = data.draw(st.lists(st.sampled_from(batch), max_size=20)) if batch else []
    assert aggregate(meter, batch + resent) == aggregate(meter, batch)


@SETTINGS
@given(events)
def test_incremental_state_matches_the_definitions(batch: list[UsageEvent]) -> None:
    tokens = [parse_quantity(e.properties["tokens"], "tokens") for e in batch]
    assert aggregate(SUM, batch) == sum(tokens, Decimal(0))
    assert aggregate(COUNT, batch) == len(batch)
    assert aggregate(MAX, batch) == max(tokens, default=Decimal(0))
    assert aggregate(UNIQUE, batch) == len({e.properties["user"] for e in batch})
    latest = max(batch, key=lambda e: (e.timestamp, e.transaction_id), default=None)
    expected_last = parse_quantity(latest.properties["tokens"], "t") if latest else Decimal(0)
    assert aggregate(LAST, batch) == expected_last


@SETTINGS
@given(
    st.decimals(min_value=0, max_value=10**12, places=4),
    st.integers(1, 10_000),
    st.integers(0, 10**6),
)
def test_packages_is_the_exact_ceiling(quantity: Decimal, size: int, amount: int) -> None:
    count = packages(quantity, size)
    assert (count - 1) * size < quantity <= count * size or (quantity == 0 and count == 0)
    assert usage_amount(quantity, size, amount) == count * amount
