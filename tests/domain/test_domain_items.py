"""Items and seats: validating a set, period lines, per-item proration, the kind of a change."""

from datetime import UTC, datetime

import pytest

from domain.balance import settle
from domain.contracts import PlanSnapshot
from domain.errors import DomainError
from domain.invoices import InvoiceLine
from domain.item_change import decide_items_change
from domain.item_quote import Billing, quote_items_change
from domain.items import (
    Item,
    carry_item_ids,
    check_items,
    classify_items_change,
    features_of,
    item_proration_lines,
    opening_lines,
    period_lines,
    period_range,
    recurring_total,
)
from domain.periods import Interval
from domain.plan_change import ChangeKind, ChangeWhen, ProrationBehavior


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def plan(
    plan_id: str,
    amount: int,
    name: str,
    currency: str = "usd",
    interval: Interval = Interval.MONTH,
    interval_count: int = 1,
) -> PlanSnapshot:
    return PlanSnapshot(
        plan_id=plan_id,
        amount=amount,
        currency=currency,
        interval=interval,
        interval_count=interval_count,
        name=name,
    )


INSIDER = plan("plan_insider", 799, "Insider")
PATRON = plan("plan_patron", 1500, "Patron")
TEAM_YEAR = plan("plan_team", 12_000, "Team", interval=Interval.YEAR)
STORAGE_YEAR = plan("plan_storage", 2_400, "Storage", interval=Interval.YEAR)


def item(p: PlanSnapshot, quantity: int, item_id: str | None = None) -> Item:
    return Item(id=item_id or f"si_{p.plan_id}", plan=p, quantity=quantity)


def lines_of(lines: list[InvoiceLine]) -> list[tuple[str, int, str]]:
    return [(line.kind.value, line.amount, line.description) for line in lines]


# ---------------------------------------------------------------- worked numbers


def test_seats_up_mid_period_in_a_30_day_month() -> None:
    # June 2025 has 30 days; 3 -> 5 seats of 7.99 on Jun 16, 15 of 30 days left.
    lines = item_proration_lines(
        [item(INSIDER, 3)], [item(INSIDER, 5)], utc(2025, 6, 1), utc(2025, 7, 1), utc(2025, 6, 16)
    )
    # 2397 x 15/30 = 1198.5 -> 1199 (half-up); 3995 x 15/30 = 1997.5 -> 1998.
    assert lines_of(lines) == [
        ("proration", -1199, "Unused time on 3 \u00d7 Insider, Jun 16 \u2013 Jul 1 2025"),
        ("proration", 1998, "Remaining time on 5 \u00d7 Insider, Jun 16 \u2013 Jul 1 2025"),
    ]
    assert sum(line.amount for line in lines) == 799
    span = (utc(2025, 6, 16), utc(2025, 7, 1))
    assert all((li.period_start, li.period_end) == span for li in lines)


def test_seats_up_mid_period_in_a_31_day_month() -> None:
    # July 2025 has 31 days; the change on Jul 21 leaves 11 of them.
    lines = item_proration_lines(
        [item(INSIDER, 3)], [item(INSIDER, 5)], utc(2025, 7, 1), utc(2025, 8, 1), utc(2025, 7, 21)
    )
    # 2397 x 11/31 = 850.58 -> 851; 3995 x 11/31 = 1417.58 -> 1418.
    assert [line.amount for line in lines] == [-851, 1418]
    assert sum(line.amount for line in lines) == 567


def test_seats_down_now_credits_the_balance_and_the_next_invoice_uses_it() -> None:
    # 5 -> 2 seats on Jun 16: -1998 (1997.5 rounded away from zero) + 799 = -1199.
    lines = item_proration_lines(
        [item(INSIDER, 5)], [item(INSIDER, 2)], utc(2025, 6, 1), utc(2025, 7, 1), utc(2025, 6, 16)
    )
    assert [line.amount for line in lines] == [-1998, 799]
    change = settle(lines, available=0, at=utc(2025, 6, 16))
    assert change.total == 0
    assert change.credited == 1199
    assert lines_of(change.lines)[-1] == ("balance", 1199, "Added to your credit balance")
    # The renewal on Jul 1: two seats, 1598, less the 1199 of credit.
    renewal = settle(
        period_lines([item(INSIDER, 2)], utc(2025, 7, 1), utc(2025, 8, 1)),
        available=change.credited,
        at=utc(2025, 7, 1),
    )
    assert lines_of(renewal.lines) == [
        ("subscription", 1598, "2 \u00d7 Insider, Jul 1 \u2013 Aug 1 2025"),
        ("balance", -1199, "Applied from your credit balance"),
    ]
    assert (renewal.total, renewal.applied) == (399, 1199)


def test_one_item_up_and_one_down_in_the_same_change() -> None:
    old = [item(INSIDER, 3), item(PATRON, 2)]
    new = [item(INSIDER, 5), item(PATRON, 1)]
    lines = item_proration_lines(old, new, utc(2025, 6, 1), utc(2025, 7, 1), utc(2025, 6, 16))
    assert lines_of(lines) == [
        ("proration", -1199, "Unused time on 3 \u00d7 Insider, Jun 16 \u2013 Jul 1 2025"),
        ("proration", 1998, "Remaining time on 5 \u00d7 Insider, Jun 16 \u2013 Jul 1 2025"),
        ("proration", -1500, "Unused time on 2 \u00d7 Patron, Jun 16 \u2013 Jul 1 2025"),
        ("proration", 750, "Remaining time on Patron, Jun 16 \u2013 Jul 1 2025"),
    ]
    # 5397 -> 5495 per month: an increase, invoiced now for the net 49.
    assert classify_items_change(old, new) is ChangeKind.UPGRADE
    assert sum(line.amount for line in lines) == 49


def test_yearly_items_in_a_leap_year() -> None:
    # 2024 has 366 days; from Mar 1 (after Feb 29) 306 are left.
    old = [item(TEAM_YEAR, 10), item(STORAGE_YEAR, 1)]
    new = [item(TEAM_YEAR, 12), item(STORAGE_YEAR, 1)]
    lines = item_proration_lines(old, new, utc(2024, 1, 1), utc(2025, 1, 1), utc(2024, 3, 1))
    # 120000 x 306/366 = 100327.87 -> 100328; 144000 x 306/366 = 120393.44 -> 120393.
    assert lines_of(lines) == [
        ("proration", -100_328, "Unused time on 10 \u00d7 Team, Mar 1 2024 \u2013 Jan 1 2025"),
        ("proration", 120_393, "Remaining time on 12 \u00d7 Team, Mar 1 2024 \u2013 Jan 1 2025"),
    ]
    assert period_range(utc(2024, 1, 1), utc(2025, 1, 1)) == "Jan 1 2024 \u2013 Jan 1 2025"
    renewal = period_lines(new, utc(2025, 1, 1), utc(2026, 1, 1))
    assert [line.amount for line in renewal] == [144_000, 2_400]


def test_a_change_at_the_exact_period_boundary_has_no_proration() -> None:
    lines = item_proration_lines(
        [item(INSIDER, 3)], [item(INSIDER, 5)], utc(2025, 6, 1), utc(2025, 7, 1), utc(2025, 7, 1)
    )
    assert lines == []


def test_removing_and_adding_items() -> None:
    lines = item_proration_lines(
        [item(INSIDER, 1), item(PATRON, 1)],
        [item(INSIDER, 1), item(plan("plan_x", 300, "Extra"), 4)],
        utc(2025, 6, 1),
        utc(2025, 7, 1),
        utc(2025, 6, 16),
    )
    # Insider unchanged: no lines; Patron removed: credit only; Extra added: debit only.
    assert [(line.amount, line.description.split(",")[0]) for line in lines] == [
        (-750, "Unused time on Patron"),
        (600, "Remaining time on 4 \u00d7 Extra"),
    ]


# ---------------------------------------------------------------- validation


def test_a_valid_set() -> None:
    check_items([(INSIDER, 3), (PATRON, 1)])
    check_items([(plan(f"plan_{n}", 100, "P"), 10_000) for n in range(20)])


@pytest.mark.parametrize(
    ("items", "code"),
    [
        ([], "invalid_items"),
        ([(plan(f"plan_{n}", 100, "P"), 1) for n in range(21)], "invalid_items"),
        ([(INSIDER, 1), (INSIDER, 2)], "invalid_items"),
        ([(INSIDER, 0)], "invalid_items"),
        ([(INSIDER, 10_001)], "invalid_items"),
        ([(INSIDER, 1), (plan("plan_eur", 100, "Euro", currency="eur"), 1)], "currency_mismatch"),
        ([(INSIDER, 1), (TEAM_YEAR, 1)], "interval_mismatch"),
        (
            [(INSIDER, 1), (plan("plan_q", 100, "Quarterly", interval_count=3), 1)],
            "interval_mismatch",
        ),
    ],
)
def test_invalid_sets(items: list[tuple[PlanSnapshot, int]], code: str) -> None:
    with pytest.raises(DomainError) as info:
        check_items(items)
    assert (info.value.code, info.value.http_status) == (code, 422)


def metered(plan_id: str, meter_id: str) -> PlanSnapshot:
    return plan(plan_id, 200, plan_id).model_copy(update={"meter_id": meter_id})


def test_at_most_one_metered_item_per_meter() -> None:
    """Usage aggregates per (subscription, meter, period): two metered items on one meter
    would both bill the whole quantity."""
    calls, storage = metered("plan_calls", "mtr_calls"), metered("plan_storage", "mtr_gb")
    check_items([(INSIDER, 1), (calls, 1), (storage, 1)])
    overage = metered("plan_overage", "mtr_calls")
    with pytest.raises(DomainError) as info:
        check_items([(calls, 1), (INSIDER, 1), (overage, 1)])
    assert (info.value.code, info.value.http_status) == ("invalid_items", 422)
    assert info.value.message.startswith("Plans plan_calls and plan_overage share meter mtr_calls")


def test_a_change_to_a_second_item_on_a_meter_is_rejected() -> None:
    calls, overage = metered("plan_calls", "mtr_calls"), metered("plan_overage", "mtr_calls")
    old = [item(INSIDER, 1), item(calls, 1)]
    with pytest.raises(DomainError) as info:
        decide_items_change(old, [*old, item(overage, 1)], "active", 0)
    assert info.value.code == "invalid_items" and "share meter mtr_calls" in info.value.message
    swapped = decide_items_change(old, [item(INSIDER, 1), item(overage, 1)], "active", 0)
    assert swapped.kind == ChangeKind.LATERAL, "replacing the meter's item is allowed"


# ---------------------------------------------------------------- deciding a change


def test_increase_is_now_and_invoiced_decrease_waits() -> None:
    up = decide_items_change([item(INSIDER, 3)], [item(INSIDER, 5)], "active", 0)
    assert (up.kind, up.when, up.proration) == (
        ChangeKind.UPGRADE,
        ChangeWhen.NOW,
        ProrationBehavior.ALWAYS_INVOICE,
    )
    down = decide_items_change([item(INSIDER, 5)], [item(INSIDER, 2)], "active", 0)
    assert (down.when, down.proration) == (ChangeWhen.PERIOD_END, ProrationBehavior.NONE)
    down_now = decide_items_change(
        [item(INSIDER, 5)], [item(INSIDER, 2)], "active", 0, requested_when=ChangeWhen.NOW
    )
    assert (down_now.when, down_now.proration) == (
        ChangeWhen.NOW,
        ProrationBehavior.CREATE_PRORATIONS,
    )
    # Same total, other plans: waits for the period end unless a plan change says now.
    swap = ([item(PATRON, 1)], [item(plan("plan_p2", 1500, "Patron 2"), 1)])
    assert decide_items_change(*swap, "active", 0).when is ChangeWhen.PERIOD_END
    assert (
        decide_items_change(*swap, "active", 0, lateral_when=ChangeWhen.NOW).when is ChangeWhen.NOW
    )


def test_trial_changes_apply_now_without_proration() -> None:
    decision = decide_items_change([item(INSIDER, 5)], [item(INSIDER, 2)], "trialing", 0)
    assert (decision.when, decision.proration) == (ChangeWhen.NOW, ProrationBehavior.NONE)


def test_a_new_period_length_applies_now_with_a_new_anchor() -> None:
    decision = decide_items_change([item(INSIDER, 1)], [item(TEAM_YEAR, 1)], "active", 0)
    assert (decision.kind, decision.when, decision.new_anchor) == (
        ChangeKind.INTERVAL_CHANGE,
        ChangeWhen.NOW,
        True,
    )


@pytest.mark.parametrize(
    ("old", "new", "status", "changes", "code"),
    [
        (3, 5, "past_due", 0, "subscription_past_due"),
        (3, 5, "paused", 0, "subscription_not_changeable"),
        (3, 3, "active", 0, "same_items"),
        (3, 5, "active", 3, "too_many_changes"),
    ],
)
def test_guardrails(old: int, new: int, status: str, changes: int, code: str) -> None:
    with pytest.raises(DomainError) as info:
        decide_items_change([item(INSIDER, old)], [item(INSIDER, new)], status, changes)
    assert info.value.code == code


def test_past_due_may_lower_the_total() -> None:
    decision = decide_items_change([item(INSIDER, 5)], [item(INSIDER, 2)], "past_due", 0)
    assert decision.kind is ChangeKind.DOWNGRADE


def test_items_keep_their_ids_and_totals() -> None:
    old = [item(INSIDER, 3, "si_a"), item(PATRON, 1, "si_b")]
    new = carry_item_ids(old, [item(INSIDER, 5, "si_new"), item(STORAGE_YEAR, 1, "si_c")])
    assert [i.id for i in new] == ["si_a", "si_c"]
    assert recurring_total(old) == 2397 + 1500


# ---------------------------------------------------------------- quoting a change


def test_quotes_of_each_kind_of_change() -> None:
    start, end, now = utc(2025, 6, 1), utc(2025, 7, 1), utc(2025, 6, 16)
    old, up = [item(INSIDER, 3)], [item(INSIDER, 5)]
    where = {"period_start": start, "period_end": end, "anchor": start, "now": now}
    quote = quote_items_change(old, up, decide_items_change(old, up, "active", 0), **where)
    assert (quote.billing, [li.amount for li in quote.lines]) == (
        Billing.INVOICE_NOW,
        [-1199, 1998],
    )
    assert (quote.invoice_start, quote.invoice_end) == (now, end)

    down = [item(INSIDER, 2)]
    later = quote_items_change(old, down, decide_items_change(old, down, "active", 0), **where)
    assert later.billing is Billing.AT_PERIOD_END
    assert (later.effective_at, later.period_end) == (end, utc(2025, 8, 1))
    assert [li.amount for li in later.lines] == [1598]

    deferred = decide_items_change(
        old, up, "active", 0, requested_proration=ProrationBehavior.CREATE_PRORATIONS
    )
    quote = quote_items_change(old, up, deferred, **where)
    assert quote.billing is Billing.NEXT_INVOICE and len(quote.lines) == 2

    yearly = [item(TEAM_YEAR, 2)]
    switch = quote_items_change(old, yearly, decide_items_change(old, yearly, "active", 0), **where)
    assert switch.billing is Billing.INVOICE_NOW
    assert (switch.anchor, switch.period_start, switch.period_end) == (now, now, utc(2026, 6, 16))
    # Unused time on 3 seats (-1199), then a full year of 2 Team seats.
    assert [li.amount for li in switch.lines] == [-1199, 24_000]


def test_opening_lines_full_and_partial() -> None:
    seats = [item(INSIDER, 3), item(PATRON, 1)]
    lines, end = opening_lines(seats, utc(2025, 6, 1), utc(2025, 7, 1))
    assert end == utc(2025, 8, 1)
    assert [(li.kind.value, li.amount) for li in lines] == [
        ("subscription", 2397),
        ("subscription", 1500),
    ]
    # A trial ending Jun 16 on a Jun 1 anchor: the rest of June, pro rata (15 of 30 days).
    lines, end = opening_lines(seats, utc(2025, 6, 1), utc(2025, 6, 16))
    assert end == utc(2025, 7, 1)
    assert [(li.kind.value, li.amount, li.description) for li in lines] == [
        ("proration", 1199, "3 \u00d7 Insider, Jun 16 \u2013 Jul 1 2025"),
        ("proration", 750, "Patron, Jun 16 \u2013 Jul 1 2025"),
    ]
    with_features = [
        item(INSIDER.model_copy(update={"features": ["posts", "chat"]}), 1),
        item(PATRON.model_copy(update={"features": ["chat", "merch"]}), 1),
    ]
    assert features_of(with_features) == ["posts", "chat", "merch"]
