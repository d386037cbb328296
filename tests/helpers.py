"""Small helpers shared by integration tests: API calls (each asserts the status it
expects), waiting for a condition (`eventually`), reading workflow histories."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar, overload

import httpx
import stripe
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

T = TypeVar("T")


class _Poll:
    """The rules every wait in the tests follows; see `eventually`."""

    def __init__(self, until: Callable[[Any], object] | None, timeout: float, what: str) -> None:
        self._until = until
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._what = what
        self._last: object = None

    def reached(self, value: object) -> bool:
        self._last = value
        return bool(self._until(value) if self._until is not None else value)

    def not_yet(self, err: AssertionError) -> None:
        self._last = err

    def check_deadline(self) -> None:
        if time.monotonic() >= self._deadline:
            raise AssertionError(
                f"{self._what} not reached within {self._timeout}s; last: {self._last!r}"
            )


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], object] | None = None,
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T],
    until: Callable[[T], object] | None = None,
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T: ...


async def eventually(
    probe: Callable[[], Any],
    until: Callable[[Any], object] | None = None,
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Call `probe` (sync or async) until its value satisfies `until` (or, without `until`,
    is truthy) and return that value. An AssertionError from `probe` counts as "not yet",
    so a probe may assert; any other error ends the wait at once. After `timeout` seconds,
    fail with the last value or assertion."""
    poll = _Poll(until, timeout, what)
    while True:
        try:
            value = probe()
            if inspect.isawaitable(value):
                value = await value
            if poll.reached(value):
                return value
        except AssertionError as err:
            poll.not_yet(err)
        poll.check_deadline()
        await asyncio.sleep(interval)


def eventually_blocking(
    probe: Callable[[], T],
    until: Callable[[T], object] | None = None,
    *,
    timeout: float = 10.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """`eventually` for synchronous tests (those driving subprocesses with blocking calls),
    by the same rules."""
    poll = _Poll(until, timeout, what)
    while True:
        try:
            value = probe()
            if poll.reached(value):
                return value
        except AssertionError as err:
            poll.not_yet(err)
        poll.check_deadline()
        time.sleep(interval)


async def serving(base_url: str, timeout: float = 20.0) -> None:
    """Wait until an API started in the background answers `/healthz`."""
    async with httpx.AsyncClient(base_url=base_url) as client:

        async def healthy() -> bool:
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False  # not listening yet

        await eventually(healthy, timeout=timeout, what=f"{base_url} serving")


def stripe_signature(body: bytes, secret: str, at: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe sends for `body` (at `at`, default now)."""
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=at)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json()


async def make_plan(api: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": f"Tier {uuid.uuid4().hex[:6]}",
        "amount": 1000,
        "currency": "usd",
        "interval": "month",
        "features": ["posts"],
        **overrides,
    }
    return ok(await api.post("/v1/plans", json=body), 201)  # type: ignore[no-any-return]


async def make_customer(
    api: httpx.AsyncClient, payment_method: str | None = "pm_card_visa"
) -> dict[str, Any]:
    body: dict[str, Any] = {"email": f"fan-{uuid.uuid4().hex[:8]}@example.com", "name": "A Fan"}
    if payment_method:
        body["payment_method"] = payment_method
    return ok(await api.post("/v1/customers", json=body), 201)  # type: ignore[no-any-return]


async def make_clock(api: httpx.AsyncClient, at: datetime) -> dict[str, Any]:
    return ok(await api.post("/v1/test_clocks", json={"frozen_time": at.isoformat()}), 201)  # type: ignore[no-any-return]


async def advance(api: httpx.AsyncClient, clock_id: str, to: datetime) -> dict[str, Any]:
    body = {"frozen_time": to.isoformat()}
    return ok(await api.post(f"/v1/test_clocks/{clock_id}/advance", json=body))  # type: ignore[no-any-return]


async def subscribe(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    return ok(await api.post("/v1/subscriptions", json=body), 201)  # type: ignore[no-any-return]


async def get_sub(api: httpx.AsyncClient, sub_id: str) -> dict[str, Any]:
    return ok(await api.get(f"/v1/subscriptions/{sub_id}"))  # type: ignore[no-any-return]


async def invoices(api: httpx.AsyncClient, sub_id: str) -> list[dict[str, Any]]:
    return ok(await api.get("/v1/invoices", params={"subscription_id": sub_id}))  # type: ignore[no-any-return]


async def event_types(api: httpx.AsyncClient, sub_id: str) -> list[str]:
    events = ok(await api.get("/v1/events", params={"subscription_id": sub_id}))
    return [e["type"] for e in events]


async def entitled(api: httpx.AsyncClient, customer_id: str, feature: str) -> bool:
    body = ok(
        await api.get(
            "/v1/entitlements/check", params={"customer_id": customer_id, "feature": feature}
        )
    )
    return bool(body["entitled"])


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def marker_details(
    events: Iterable[HistoryEvent], marker_name: str, detail: str
) -> list[dict[str, Any]]:
    """The JSON of one detail of each marker named `marker_name`, in history order: the SDK's
    `core_local_activity` markers (detail `data`) and `core_patch` markers (`patch-data`)."""
    return [
        json.loads(e.marker_recorded_event_attributes.details[detail].payloads[0].data)
        for e in events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == marker_name
    ]


def activity_attempts(history: WorkflowHistory, activity_type: str) -> list[int]:
    """The attempt number of every run of `activity_type` recorded in a history, whether
    it ran as a (remote) activity or as a local activity (a `core_local_activity` marker)."""
    scheduled: dict[int, str] = {}
    attempts: list[int] = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = e.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[e.event_id] = name
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = e.activity_task_started_event_attributes
            if scheduled.get(started.scheduled_event_id) == activity_type:
                attempts.append(started.attempt)
        else:
            for data in marker_details([e], "core_local_activity", "data"):
                if data["activity_type"] == activity_type:
                    attempts.append(int(data["attempt"]))
    return attempts
