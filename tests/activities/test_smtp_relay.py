"""The SMTP relay reuses its connections, notices one the server closed, and never reuses a
connection a send failed on. Against a real SMTP server (aiosmtpd) on a loopback port."""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from activities.smtp_relay import RelayAddress, SmtpRelay
from devstack.process import free_port


class Recorder:
    """Accepts mail (or refuses it with `refuse`) and remembers which connection sent it."""

    def __init__(self) -> None:
        self.received: list[tuple[Any, str]] = []  # (client address, Subject)
        self.refuse: str | None = None
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse is not None:
            return self.refuse
        subject = ""
        for line in envelope.content.decode().splitlines():
            if line.startswith("Subject: "):
                subject = line.removeprefix("Subject: ")
        with self._lock:
            self.received.append((session.peer, subject))
        return "250 OK"


def _server(recorder: Recorder, port: int) -> Controller:
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    return controller


@pytest.fixture
def smtp_server() -> Iterator[tuple[Recorder, int]]:
    recorder, port = Recorder(), free_port()
    controller = _server(recorder, port)
    yield recorder, port
    controller.stop()


def _message(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "billing@recur.test"
    message["To"] = "customer@example.com"
    message["Subject"] = subject
    message.set_content("hello")
    return message


def test_messages_share_one_connection(smtp_server: tuple[Recorder, int]) -> None:
    recorder, port = smtp_server
    relay = SmtpRelay(f"smtp://127.0.0.1:{port}")
    for i in range(3):
        relay.send(_message(f"m{i}"))
    relay.close()

    assert [subject for _, subject in recorder.received] == ["m0", "m1", "m2"]
    assert relay.connections_opened == 1
    assert len({peer for peer, _ in recorder.received}) == 1


def test_a_connection_the_server_dropped_is_replaced_before_sending() -> None:
    recorder, port = Recorder(), free_port()
    first = _server(recorder, port)
    relay = SmtpRelay(f"smtp://127.0.0.1:{port}", check_after_seconds=0.0, timeout=5.0)
    relay.send(_message("before"))
    first.stop()  # the relay's pooled connection is now dead
    second = _server(recorder, port)
    try:
        relay.send(_message("after"))
    finally:
        relay.close()
        second.stop()

    assert [subject for _, subject in recorder.received] == ["before", "after"]
    assert relay.connections_opened == 2


def test_a_failed_send_raises_and_its_connection_is_not_reused(
    smtp_server: tuple[Recorder, int],
) -> None:
    recorder, port = smtp_server
    relay = SmtpRelay(f"smtp://127.0.0.1:{port}")
    recorder.refuse = "554 Transaction failed"
    with pytest.raises(smtplib.SMTPDataError):
        relay.send(_message("refused"))
    recorder.refuse = None
    relay.send(_message("accepted"))
    relay.close()

    assert [subject for _, subject in recorder.received] == ["accepted"]
    assert relay.connections_opened == 2


def test_an_idle_connection_past_its_age_is_not_reused(smtp_server: tuple[Recorder, int]) -> None:
    recorder, port = smtp_server
    relay = SmtpRelay(f"smtp://127.0.0.1:{port}", max_idle_seconds=0.0)
    relay.send(_message("one"))
    relay.send(_message("two"))
    relay.close()

    assert len(recorder.received) == 2
    assert relay.connections_opened == 2


def test_relay_addresses() -> None:
    assert RelayAddress.parse("smtp://127.0.0.1:8025") == RelayAddress(
        "127.0.0.1", 8025, secure=False, starttls=False, username=None, password=""
    )
    assert RelayAddress.parse("smtps://u%40x:p%2Fw@mail.example.com") == RelayAddress(
        "mail.example.com", 465, secure=True, starttls=False, username="u@x", password="p/w"
    )
    assert RelayAddress.parse("smtp://mail.example.com?starttls=true") == RelayAddress(
        "mail.example.com", 25, secure=False, starttls=True, username=None, password=""
    )
