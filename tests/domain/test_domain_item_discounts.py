"""Discounts on item lines, worked by hand: item lines carry their plan (what a coupon limited
to some plans looks at), per-item proration priced on the discounted item totals, and the
balance settled after the discount line."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from domain.balance import settle
from domain.contracts import PlanSnapshot
from domain.coupons import CouponTerms, Duration, percent_to_hundredths
from domain.discounts import apply_discount, discounted_total, start_discount
from domain.items import Item, item_proration_lines, partial_period_lines, period_lines
from domain.periods import Interval

JAN, FEB = datetime(2031, 1, 1, tzinfo=UTC), datetime(2031, 2, 1, tzinfo=UTC)
SEAT = PlanSnapshot(
    plan_id="plan_seat", amount=1000, currency="usd", interval=Interval.MONTH, name="Seat"
)
ADDON = PlanSnapshot(
    plan_id="plan_addon", amount=500, currency="usd", interval=Interval.MONTH, name="Add-on"
)
SEATS_ONLY = start_discount(
    CouponTerms(
        coupon_id="coupon_seats",
        name="Seats",
        percent_off_hundredths=percent_to_hundredths(Decimal("25")),
        duration=Duration.FOREVER,
        applies_to_plans=["plan_seat"],
    ),
    JAN,
)


def items(seats: int) -> list[Item]:
    return [Item(id="si_seat", plan=SEAT, quantity=seats), Item(id="si_addon", plan=ADDON)]


def price(item: Item) -> int:
    return discounted_total(SEATS_ONLY, item.plan.plan_id, item.total, JAN)


def test_item_lines_carry_their_plan_and_the_discount_takes_only_its_plan() -> None:
    lines = period_lines(items(2), JAN, FEB)
    assert [(line.plan_id, line.amount) for line in lines] == [
        ("plan_seat", 2000),
        ("plan_addon", 500),
    ]
    discounted, _ = apply_discount(SEATS_ONLY, lines, "in_1", JAN)
    # 25% of the seats' 2000 only.
    assert [line.amount for line in discounted] == [2000, 500, -500]


def test_the_balance_comes_after_the_discount_and_at_most_what_is_left() -> None:
    discounted, _ = apply_discount(SEATS_ONLY, period_lines(items(2), JAN, FEB), "in_1", JAN)
    settled = settle(discounted, 5000, JAN)
    assert [line.kind.value for line in settled.lines][-2:] == ["discount", "balance"]
    assert (settled.applied, settled.total) == (2000, 0)


def test_per_item_proration_on_discounted_totals() -> None:
    moment = datetime(2031, 1, 16, tzinfo=UTC)
    # Seats 2 -> 3: discounted 1500 -> 2250 for 16 of 31 days; the add-on is unchanged.
    # 1500 x 16/31 = 774.19 -> 774; 2250 x 16/31 = 1161.29 -> 1161.
    lines = item_proration_lines(items(2), items(3), JAN, FEB, moment, price)
    assert [(line.plan_id, line.amount) for line in lines] == [
        ("plan_seat", -774),
        ("plan_seat", 1161),
    ]
    # Without a price: the undiscounted totals, 2000 -> 3000.
    plain = item_proration_lines(items(2), items(3), JAN, FEB, moment)
    assert [line.amount for line in plain] == [-1032, 1548]


def test_a_partial_first_period_is_priced_on_discounted_totals() -> None:
    start = datetime(2031, 1, 17, tzinfo=UTC)
    # 15 of 31 days: seats 1500 x 15/31 = 725.8 -> 726; add-on 500 x 15/31 = 241.9 -> 242.
    lines = partial_period_lines(items(2), FEB, start, FEB, price)
    assert [(line.kind.value, line.plan_id, line.amount) for line in lines] == [
        ("proration", "plan_seat", 726),
        ("proration", "plan_addon", 242),
    ]
    # Proration lines only: no discount line on top.
    assert apply_discount(SEATS_ONLY, lines, "in_1", start)[0] == lines
