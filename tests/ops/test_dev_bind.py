"""Every service `recur dev` starts listens on 127.0.0.1 only (issue #22, finding 10): the
fake Stripe takes any request, the SMTP sink any mail, the worker's metrics and the
Temporal UI have no authentication; none of them may be reachable from the network."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from config import Settings
from devstack.process import Child, free_port, wait_until
from devstack.smtp_sink import start_smtp_sink
from devstack.stripe_fake import start_localstripe
from devstack.temporal import start_temporal
from tests.conftest import Stack
from tests.ops.listening import listening_addresses
from worker import metrics_runtime

LOOPBACK = {"127.0.0.1"}


def test_the_proc_table_reader_sees_a_wildcard_listener() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert listening_addresses(port) == {"0.0.0.0"}


def test_localstripe_smtp_sink_and_temporal_ui_listen_on_loopback_only(tmp_path: Path) -> None:
    children: list[Child] = []
    try:
        stripe_port, smtp_port = free_port(), free_port()
        temporal_port, ui_port = free_port(), free_port()
        children.append(start_localstripe(port=stripe_port, log_path=tmp_path / "stripe.log"))
        children.append(
            start_smtp_sink(port=smtp_port, maildir=tmp_path / "mail", log_path=tmp_path / "s.log")
        )
        children.append(
            start_temporal(port=temporal_port, ui_port=ui_port, log_path=tmp_path / "t.log")
        )
        wait_until(lambda: bool(listening_addresses(ui_port)), "the Temporal UI", timeout=60)
        assert listening_addresses(stripe_port) == LOOPBACK, "localstripe"
        assert listening_addresses(smtp_port) == LOOPBACK, "SMTP sink"
        assert listening_addresses(temporal_port) == LOOPBACK, "Temporal frontend"
        assert listening_addresses(ui_port) == LOOPBACK, "Temporal UI"
    finally:
        for child in reversed(children):
            child.stop()


def test_postgresql_of_the_stack_listens_on_loopback_only(stack: Stack) -> None:
    port = urlsplit(stack.settings.effective_database_url).port
    assert port is not None
    assert listening_addresses(port) == LOOPBACK


def test_the_worker_metrics_endpoint_listens_on_loopback_by_default() -> None:
    port = free_port()
    runtime = metrics_runtime(Settings(worker_metrics_port=port))
    assert runtime is not None
    wait_until(lambda: bool(listening_addresses(port)), "the metrics endpoint", timeout=10)
    assert listening_addresses(port) == LOOPBACK
