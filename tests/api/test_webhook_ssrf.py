"""Outbound webhooks never reach loopback, private, link-local or metadata addresses unless
RECUR_WEBHOOK_ALLOW_PRIVATE_TARGETS allows it: refused at registration (422) and, after
resolving the host, at delivery (failed at once, with an error that says nothing of the
network).

An API and deliveries with the switch off run on a scratch database, which the session's
worker (switch on, for the loopback receiver of the other tests) never delivers from.
No request here goes anywhere but 127.0.0.1.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from activities.notifications import REFUSED_TARGET, Deliveries
from activities.webhook_transport import GuardedBackend, TargetRefused
from api.app import create_app
from api.bootstrap import ensure_admin_key
from config import Settings
from db.delivery_tables import WebhookEndpoint
from db.engine import transaction
from db.models import Event
from devstack.process import free_port
from domain.notifications import NotificationOutcome
from tests.conftest import ADMIN_KEY, Stack
from tests.webhook_receiver import Receiver


@dataclass
class Guarded:
    api: httpx.AsyncClient
    engine: AsyncEngine
    settings: Settings  # the switch off


@pytest.fixture
async def guarded(
    stack: Stack, temporal_client: Client, scratch: AsyncEngine
) -> AsyncIterator[Guarded]:
    settings = stack.settings.model_copy(
        update={
            "database_url": scratch.url.render_as_string(hide_password=False),
            "webhook_allow_private_targets": False,
        }
    )
    assert not settings.allows_private_webhook_targets
    await ensure_admin_key(scratch, ADMIN_KEY)
    app = create_app(settings, temporal=temporal_client)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://recur.test",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ) as api,
    ):
        yield Guarded(api=api, engine=scratch, settings=settings)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hooks",
        "http://10.0.0.1/hooks",
        "http://192.168.1.20:8080/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::1]/hooks",
        "http://[::ffff:10.0.0.1]/hooks",
        "http://[fe80::1]/hooks",
        "http://0.0.0.0:{port}/hooks",
        "http://2130706433/hooks",  # 127.0.0.1 as one number
        "http://0x7f.1/hooks",
        "http://localhost:{port}/hooks",
        "https://metadata.google.internal/computeMetadata/v1/",
    ],
)
async def test_registration_refuses_non_public_targets(guarded: Guarded, url: str) -> None:
    response = await guarded.api.post(
        "/v1/webhook_endpoints",
        json={"url": url.format(port=free_port()), "events": ["*"]},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "webhook_target_not_allowed"
    listed = (await guarded.api.get("/v1/webhook_endpoints")).json()
    assert listed == [], "nothing was registered"


async def _endpoint_and_event(engine: AsyncEngine, url: str) -> tuple[str, str]:
    """An endpoint registered while the switch was on (or before the guard existed), and an
    event for it."""
    now = datetime.now(UTC)
    endpoint_id, event_id = f"we_{uuid.uuid4().hex[:12]}", f"evt_{uuid.uuid4().hex[:24]}"
    async with transaction(engine) as session:
        session.add(
            WebhookEndpoint(
                id=endpoint_id,
                url=url,
                events=["*"],
                secret="whsec_ssrf_test_secret",
                created_at=now,
            )
        )
        session.add(
            Event(
                id=event_id,
                type="customer.created",
                customer_id="cus_ssrf",
                data={},
                occurred_at=now,
                created_at=now,
            )
        )
    return endpoint_id, event_id


async def _deliver(deliveries: Deliveries, endpoint_id: str, event_id: str) -> NotificationOutcome:
    try:
        return await deliveries.webhook(endpoint_id, event_id, attempt=1, max_attempts=8)
    finally:
        await deliveries.aclose()


async def test_a_name_that_resolves_to_loopback_is_refused_at_delivery(
    guarded: Guarded,
) -> None:
    receiver = await Receiver(secret="whsec_ssrf_test_secret").start()
    try:
        url = f"http://localhost:{receiver.port}/hooks"
        endpoint_id, event_id = await _endpoint_and_event(guarded.engine, url)

        outcome = await _deliver(
            Deliveries(guarded.engine, guarded.settings), endpoint_id, event_id
        )
        assert outcome.status == "failed", "given up at once, not retried"
        assert outcome.error == REFUSED_TARGET
        assert outcome.status_code is None
        assert receiver.requests == 0, "no connection reached the receiver"

        log = (await guarded.api.get(f"/v1/webhook_endpoints/{endpoint_id}/deliveries")).json()
        assert [(d["status"], d["last_error"], d["last_status_code"]) for d in log] == [
            ("failed", REFUSED_TARGET, None)
        ]
        for detail in ("127.0.0.1", "localhost", str(receiver.port), "loopback", "Errno"):
            assert detail not in log[0]["last_error"]

        # The same endpoint with the switch on: resolved, checked, connected, delivered.
        allowed = guarded.settings.model_copy(update={"webhook_allow_private_targets": True})
        second_event = (await _endpoint_and_event(guarded.engine, url))[1]
        outcome = await _deliver(Deliveries(guarded.engine, allowed), endpoint_id, second_event)
        assert outcome.status == "delivered", outcome
        assert [p["id"] for p in receiver.accepted] == [second_event]
    finally:
        await receiver.stop()


async def test_a_name_accepted_at_registration_is_checked_again_after_resolving(
    guarded: Guarded,
) -> None:
    """DNS rebinding: a public-looking name registers (names are not resolved then), and
    at delivery time it resolves to loopback (simulated: this machine has no DNS).
    Refused before any connection is made."""
    receiver = await Receiver(secret="whsec_ssrf_test_secret").start()
    try:
        created = await guarded.api.post(
            "/v1/webhook_endpoints",
            json={"url": f"http://hooks.rebind.example:{receiver.port}/recur", "events": ["*"]},
        )
        assert created.status_code == 201, created.text
        endpoint_id = created.json()["id"]
        event_id = (await _endpoint_and_event(guarded.engine, "unused"))[1]
        asked: list[tuple[str, int]] = []

        async def rebinding_dns(host: str, port: int) -> list[str]:
            asked.append((host, port))
            return ["127.0.0.1"]

        deliveries = Deliveries(guarded.engine, guarded.settings, resolver=rebinding_dns)
        outcome = await _deliver(deliveries, endpoint_id, event_id)
        assert asked == [("hooks.rebind.example", receiver.port)]
        assert (outcome.status, outcome.error) == ("failed", REFUSED_TARGET)
        assert receiver.requests == 0
    finally:
        await receiver.stop()


async def test_the_connection_goes_to_the_address_that_was_checked(guarded: Guarded) -> None:
    """With the switch on, a name resolved by the guard's resolver is connected at the
    address it returned (the system resolver knows nothing of this name), and the request
    still names the host."""
    receiver = await Receiver(secret="whsec_ssrf_test_secret").start()
    try:
        url = f"http://hooks.pinned.example:{receiver.port}/hooks"
        endpoint_id, event_id = await _endpoint_and_event(guarded.engine, url)

        async def dns(host: str, port: int) -> list[str]:
            assert host == "hooks.pinned.example"
            return ["127.0.0.1"]

        allowed = guarded.settings.model_copy(update={"webhook_allow_private_targets": True})
        outcome = await _deliver(
            Deliveries(guarded.engine, allowed, resolver=dns), endpoint_id, event_id
        )
        assert outcome.status == "delivered", outcome
        assert [p["id"] for p in receiver.accepted] == [event_id]
    finally:
        await receiver.stop()


@pytest.mark.parametrize(
    ("answer", "refused"),
    [
        (["127.0.0.1"], "loopback"),
        (["93.184.216.34", "169.254.169.254"], "metadata"),
        (["2606:4700:4700::1111", "fd00::5"], "unique_local"),
        (["::ffff:192.168.0.1"], "private"),
        (["224.0.0.251"], "multicast"),
    ],
)
async def test_every_resolved_address_is_checked(answer: list[str], refused: str) -> None:
    """One refused address refuses the name, public addresses beside it or not (checked
    without connecting: `connect_tcp` connects only to what this returns)."""

    async def dns(host: str, port: int) -> list[str]:
        return answer

    backend = GuardedBackend(allow_private=False, resolver=dns)
    with pytest.raises(TargetRefused) as caught:
        await backend.checked_addresses("hooks.example", 443, timeout=1)
    assert caught.value.reason == refused


async def test_unix_sockets_are_refused() -> None:
    backend = GuardedBackend(allow_private=True)
    with pytest.raises(TargetRefused):
        await backend.connect_unix_socket("/var/run/docker.sock")


async def test_unresolvable_names_fail_as_a_connection_error() -> None:
    async def no_dns(host: str, port: int) -> list[str]:
        raise OSError("no network")

    backend = GuardedBackend(allow_private=False, resolver=no_dns)
    with pytest.raises(Exception, match="could not resolve the host"):
        await backend.checked_addresses("hooks.example", 443, timeout=1)
