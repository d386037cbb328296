"""A line break in text that reaches an email header (a plan or customer name stored before
the API refused them) can neither add headers or recipients nor break the message: the
template's subject is one line, and the relay flattens any header value to one line before
sending. Against a real SMTP server (aiosmtpd) on a loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from activities.email_templates import EmailContext, one_line, render
from activities.smtp_relay import SmtpRelay, header_safe
from devstack.process import free_port

HOSTILE = "Gold\r\nBcc: everyone@example.com\r\n\r\nInjected body"


class Inbox:
    def __init__(self) -> None:
        self.received: list[tuple[list[str], Message]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.received.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box, port = Inbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.mark.parametrize(
    "template", ["trial_will_end", "payment_failed", "renewal_receipt", "canceled"]
)
def test_a_template_subject_is_one_line_whatever_the_plan_is_called(template: str) -> None:
    ctx = EmailContext(
        customer_name="A\nFan", plan_name=HOSTILE, amount="1.00 USD", subscription_id="sub_1"
    )
    subject, _ = render(template, ctx)
    assert "\r" not in subject and "\n" not in subject
    assert "Gold Bcc: everyone@example.com Injected body" in subject


def test_one_line_keeps_plain_text_and_folds_breaks_into_spaces() -> None:
    assert one_line("Receipt: Gold\tTier renewed") == "Receipt: Gold\tTier renewed"
    assert one_line("a\r\n b\nc\x00d\u2028e") == "a b c d e"


def test_a_safe_header_keeps_its_folding_but_no_other_break() -> None:
    folded = "=?utf-8?q?Gr=C3=BC=C3=9Fe?=\n =?utf-8?q?und_mehr?="
    assert header_safe(folded) == folded
    assert header_safe("a\r\nBcc: x@example.com") == "a Bcc: x@example.com"
    assert header_safe("a\n\nbody\x00") == "a body "


def _message(subject: str, to: str) -> Message:
    message = Message()
    message.set_payload("hello")
    message["From"] = "billing@recur.test"
    message["To"] = to
    message["Subject"] = subject
    return message


def test_the_relay_sends_a_header_with_a_line_break_as_one_line(inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    relay = SmtpRelay(f"smtp://127.0.0.1:{port}")
    try:
        relay.send(_message(f"Receipt: {HOSTILE} renewed", "fan@example.com"))
        relay.send(_message("Receipt: Silver renewed", "other@example.com"))
    finally:
        relay.close()
    (first_rcpt, first), (second_rcpt, second) = box.received
    assert first_rcpt == ["fan@example.com"], "no recipient was added by the subject"
    assert first["Bcc"] is None
    assert first["Subject"] == "Receipt: Gold Bcc: everyone@example.com Injected body renewed"
    assert first.get_payload().strip() == "hello"
    assert second_rcpt == ["other@example.com"] and second["Subject"] == "Receipt: Silver renewed"
