"""What an endpoint may subscribe to, and the email templates (pure, no I/O). Which events
an endpoint gets is SQL: tests/activities/test_projection_statement.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from activities.email_templates import EmailContext, render
from domain.notifications import EMAIL_TEMPLATES, EVENT_PATTERN


def test_event_patterns() -> None:
    for good in ("*", "invoice.*", "subscription.trial_will_end", "entitlement.granted"):
        assert EVENT_PATTERN.match(good)
    for bad in ("", "invoice", "Invoice.paid", "invoice.*.*", "*.paid", "invoice paid"):
        assert not EVENT_PATTERN.match(bad)


@pytest.mark.parametrize("template", sorted(set(EMAIL_TEMPLATES.values())))
def test_every_template_renders_plain_text(template: str) -> None:
    ctx = EmailContext(
        customer_name="Ada",
        plan_name="Insider",
        amount="15.00 USD",
        subscription_id="sub_1",
        trial_end=datetime(2027, 3, 4, tzinfo=UTC),
        period_start=datetime(2027, 3, 4, tzinfo=UTC),
        period_end=datetime(2027, 4, 4, tzinfo=UTC),
        invoice_id="in_1",
        next_retry_at=datetime(2027, 3, 5, tzinfo=UTC),
        retry="scheduled",
        reason="requested",
        occurred_at=datetime(2027, 3, 4, tzinfo=UTC),
    )
    subject, body = render(template, ctx)
    assert subject and "\n" not in subject
    assert body.startswith("Hi Ada,")
    assert "sub_1" in body
    assert "$" not in body, "every placeholder was filled"


def test_payment_failed_says_when_it_retries() -> None:
    base = {"customer_name": "Ada", "plan_name": "Pro", "amount": "9.00 USD"}
    no_retry = render(
        "payment_failed", EmailContext(**base, subscription_id="s", retry="payment_method")
    )[1]
    assert "until a new payment method is added" in no_retry
    later = render("payment_failed", EmailContext(**base, subscription_id="s", retry="later"))[1]
    assert "over the coming days" in later
    with pytest.raises(ValueError):
        render("nope", EmailContext(**base, subscription_id="s"))
