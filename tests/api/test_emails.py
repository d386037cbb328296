"""Customer emails through SMTP, captured by the session's SMTP sink (.eml files)."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path

import httpx

from tests.conftest import Stack
from tests.helpers import (
    advance,
    event_types,
    eventually,
    get_sub,
    make_clock,
    make_customer,
    make_plan,
    ok,
    subscribe,
)
from worker import WorkerParts

START = datetime(2027, 6, 1, 8, 0, tzinfo=UTC)


def _messages(maildir: Path, to: str) -> list[Message]:
    found = []
    for path in sorted(maildir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes())
        if message["To"] == to:
            found.append(message)
    return found


async def _wait_mail(maildir: Path, to: str, subject_part: str) -> Message:
    def about() -> Message | None:
        found = (m for m in _messages(maildir, to) if subject_part in m["Subject"])
        return next(found, None)

    message = await eventually(about, what=f"an email to {to} about {subject_part!r}")
    assert message is not None
    return message


def _text(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def _no_secrets(message: Message) -> None:
    raw = message.as_string()
    for needle in ("pm_card", "pm_", "whsec_", "rk_test", "sk_test"):
        assert needle not in raw, f"{needle} leaked into an email"


async def test_trial_ending_email_three_days_before(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    api, maildir = app_client, stack.settings.data_dir / "mail"
    plan = await make_plan(api, name="Insider", amount=1500, trial_days=7)
    customer = await make_customer(api)
    clock = await make_clock(api, START)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    # The advance answers once the workflow has caught up: no warning is due yet.
    await advance(api, clock["id"], START + timedelta(days=3, hours=23))
    assert "subscription.trial_will_end" not in await event_types(api, sub["id"])

    await advance(api, clock["id"], START + timedelta(days=4))
    message = await _wait_mail(maildir, customer["email"], "trial ends")
    # The outbox sends in order: had anything been sent before the warning, it would be here.
    assert len(_messages(maildir, customer["email"])) == 1, "nothing before the warning"
    assert message["Subject"] == "Your Insider trial ends on June 8, 2027"
    assert message["From"] == stack.settings.email_from
    body = _text(message)
    assert "Hi A Fan," in body
    assert "June 8, 2027" in body
    assert "15.00 USD" in body
    assert sub["id"] in body
    _no_secrets(message)
    events = ok(await api.get("/v1/events", params={"subscription_id": sub["id"]}))
    warning = next(e for e in events if e["type"] == "subscription.trial_will_end")
    assert message["Message-ID"] == f"<{warning['id']}@recur>"


async def test_payment_failed_email_says_what_to_do(
    app_client: httpx.AsyncClient, stack: Stack, worker_parts: WorkerParts
) -> None:
    api, maildir = app_client, stack.settings.data_dir / "mail"
    plan = await make_plan(api, name="Patron", amount=2500)
    customer = await make_customer(api)
    clock = await make_clock(api, START)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    ok(
        await api.post(
            f"/v1/customers/{customer['id']}/payment_method",
            json={"payment_method": "pm_card_chargeCustomerFail"},
        )
    )
    await advance(api, clock["id"], datetime(2027, 7, 1, 8, 0, tzinfo=UTC))
    assert (await get_sub(api, sub["id"]))["status"] == "past_due"

    message = await _wait_mail(maildir, customer["email"], "payment for Patron failed")
    body = _text(message)
    assert "We could not collect 25.00 USD for your Patron subscription" in body
    assert "update your payment method" in body
    assert "we will try again on July 2, 2027" in body
    _no_secrets(message)

    # A repeated attempt (a retry after the email went out) does not send it again.
    events = ok(await api.get("/v1/events", params={"subscription_id": sub["id"]}))
    failed = next(e for e in events if e["type"] == "invoice.payment_failed")
    before = len(_messages(maildir, customer["email"]))
    outcomes = await worker_parts.deliveries.emails([(failed["id"], 1)], max_attempts=3)
    assert outcomes[failed["id"]].status == "duplicate"
    assert len(_messages(maildir, customer["email"])) == before


async def test_renewal_receipt_and_cancellation_emails(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    api, maildir = app_client, stack.settings.data_dir / "mail"
    plan = await make_plan(api, name="Supporter", amount=500)
    customer = await make_customer(api)
    clock = await make_clock(api, START)
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    await advance(api, clock["id"], datetime(2027, 7, 1, 8, 0, tzinfo=UTC))
    receipt = await _wait_mail(maildir, customer["email"], "Receipt")
    body = _text(receipt)
    assert "Amount paid: 5.00 USD" in body
    assert "July 1, 2027 to August 1, 2027" in body

    ok(await api.post(f"/v1/subscriptions/{sub['id']}/cancel", json={"at_period_end": False}))
    canceled = await _wait_mail(maildir, customer["email"], "canceled")
    assert "canceled on July 1, 2027 as requested" in _text(canceled)
    _no_secrets(receipt)
    _no_secrets(canceled)


async def test_the_renewal_receipt_lists_the_items(
    app_client: httpx.AsyncClient, stack: Stack
) -> None:
    api, maildir = app_client, stack.settings.data_dir / "mail"
    seats = await make_plan(api, name="Team seat", amount=700)
    addon = await make_plan(api, name="Archive", amount=250)
    customer = await make_customer(api)
    clock = await make_clock(api, START)
    await subscribe(
        api,
        customer_id=customer["id"],
        items=[{"plan_id": seats["id"], "quantity": 4}, {"plan_id": addon["id"]}],
        test_clock_id=clock["id"],
    )
    await advance(api, clock["id"], datetime(2027, 7, 1, 8, 0, tzinfo=UTC))
    body = _text(await _wait_mail(maildir, customer["email"], "Receipt"))
    rows = [line.split() for line in body.splitlines() if line.startswith("  ")]
    assert rows == [
        ["4", "\u00d7", "Team", "seat,", "Jul", "1", "\u2013", "Aug", "1", "2027", "28.00", "USD"],
        ["Archive,", "Jul", "1", "\u2013", "Aug", "1", "2027", "2.50", "USD"],
    ]
    assert "Amount paid: 30.50 USD" in body
