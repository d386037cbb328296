"""NotifierWorkflow: delivers one subscription's events to webhook endpoints and by email.

`sync_subscription` signal-with-starts it (id `notify/<subscription id>`) with the ids of
the events it just wrote, so the subscription's own workflow never waits on a receiver.
Each target (a webhook endpoint, or the customer's email) is a lane that delivers its
events one after another, in timeline order, through an activity that retries with
backoff; a dead endpoint only holds up its own lane. Event ids already accepted are
ignored, so a re-sent batch delivers nothing twice. After a bounded number of deliveries
the workflow continues as new (carrying the queue and lanes), and it completes after
being idle for a while; the next batch starts a fresh one.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from domain.notifications import (
    EMAIL_LANE,
    DeliveryRequest,
    EmailRequest,
    NotifierInput,
    NotifyBatch,
    RoutedEvent,
    RouteRequest,
)

ROUTE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=30)
)
ROUTE_BATCH = 100
SEEN_KEPT = 1000


@workflow.defn
class NotifierWorkflow:
    @workflow.init
    def __init__(self, inp: NotifierInput) -> None:
        self._in = inp
        self._queue: list[str] = list(inp.queue)
        self._lanes: dict[str, list[str]] = {k: list(v) for k, v in inp.lanes.items() if v}
        self._seen: list[str] = list(inp.seen)
        self._seen_set: set[str] = set(self._seen)
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._deliveries = 0
        self._stopping = False

    @workflow.signal(name="enqueue")
    def enqueue(self, batch: NotifyBatch) -> None:
        for event_id in batch.event_ids:
            if event_id not in self._seen_set:
                self._seen_set.add(event_id)
                self._seen.append(event_id)
                self._queue.append(event_id)

    @workflow.query(name="pending")
    def pending(self) -> dict[str, list[str]]:
        return {"queue": list(self._queue), **{k: list(v) for k, v in self._lanes.items()}}

    @workflow.run
    async def run(self, inp: NotifierInput) -> None:
        for target in list(self._lanes):
            self._start_lane(target)
        while True:
            if self._should_continue_as_new():
                await self._continue_as_new()
            if self._queue:
                await self._route()
                continue
            if not self._workers:
                try:
                    await workflow.wait_condition(
                        lambda: bool(self._queue), timeout=timedelta(seconds=inp.idle_seconds)
                    )
                except TimeoutError:
                    # A signal handled in the same activation wins over the timer.
                    if not self._queue:
                        return
                continue
            await workflow.wait_condition(
                lambda: bool(self._queue) or not self._workers or self._should_continue_as_new()
            )

    async def _route(self) -> None:
        batch, self._queue = self._queue[:ROUTE_BATCH], self._queue[ROUTE_BATCH:]
        # Routing only reads PostgreSQL, so it runs as a local activity: no round trip
        # through the server. Runs recorded before this patch used a remote activity.
        execute = (
            workflow.execute_local_activity
            if workflow.patched("local-routing")
            else workflow.execute_activity
        )
        routed: list[RoutedEvent] = await execute(
            "route_events",
            RouteRequest(subscription_id=self._in.subscription_id, event_ids=batch),
            result_type=list[RoutedEvent],
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=ROUTE_RETRY,
            summary=f"route {len(batch)} events",
        )
        for item in routed:
            for target in item.targets:
                self._lanes.setdefault(target, []).append(item.event_id)
                self._start_lane(target)

    def _start_lane(self, target: str) -> None:
        if target not in self._workers:
            self._workers[target] = asyncio.create_task(self._drain(target))

    async def _drain(self, target: str) -> None:
        """Deliver this lane's events in order; stop early only to continue as new."""
        lane = self._lanes[target]
        while lane and not self._stopping:
            await self._deliver(target, lane[0])
            lane.pop(0)
            self._deliveries += 1
        if not lane:
            del self._lanes[target]
        del self._workers[target]

    async def _deliver(self, target: str, event_id: str) -> None:
        retry = self._in.retry
        policy = RetryPolicy(
            initial_interval=timedelta(milliseconds=retry.initial_ms),
            backoff_coefficient=float(retry.backoff),
            maximum_interval=timedelta(milliseconds=retry.max_ms),
            maximum_attempts=retry.max_attempts,
        )
        try:
            if target == EMAIL_LANE:
                # Email goes to our own SMTP relay: a local activity, no round trip through
                # the server (a backoff longer than a minute still waits on a durable timer).
                # Webhooks stay remote activities: customer endpoints can be slow or down for
                # hours, and operators see each pending delivery and its last failure in the UI.
                execute = (
                    workflow.execute_local_activity
                    if workflow.patched("local-email")
                    else workflow.execute_activity
                )
                await execute(
                    "send_email",
                    EmailRequest(event_id=event_id, max_attempts=retry.max_attempts),
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=policy,
                    summary=f"email for {event_id}",
                )
            else:
                await workflow.execute_activity(
                    "deliver_webhook",
                    DeliveryRequest(
                        event_id=event_id, endpoint_id=target, max_attempts=retry.max_attempts
                    ),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=policy,
                    summary=f"webhook {event_id} to {target}",
                )
        except ActivityError as err:
            # The activity records the failure in the delivery log; the lane moves on.
            workflow.logger.warning("notification to %s for %s gave up: %s", target, event_id, err)

    def _should_continue_as_new(self) -> bool:
        return (
            self._deliveries >= self._in.max_deliveries_per_run
            or workflow.info().is_continue_as_new_suggested()
        )

    async def _continue_as_new(self) -> None:
        """Let in-flight deliveries finish, then hand the rest to a fresh run."""
        self._stopping = True
        await workflow.wait_condition(lambda: not self._workers)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            self._in.model_copy(
                update={
                    "queue": self._queue,
                    "lanes": self._lanes,
                    "seen": self._seen[-SEEN_KEPT:],
                }
            )
        )
