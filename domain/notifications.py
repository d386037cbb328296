"""Outbound notifications: which events send an email, what a webhook endpoint may subscribe
to, and when a failed delivery is tried again.

Pure data and rules (no I/O): the projection, the outbox dispatcher, the deliveries and the
API share them.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import BaseModel

# The outbox lane of a subscription's customer emails; every other lane is a webhook endpoint id.
EMAIL_LANE = "email"

# Event type -> email template. Only these events send the customer an email.
EMAIL_TEMPLATES: dict[str, str] = {
    "subscription.trial_will_end": "trial_will_end",
    "invoice.payment_failed": "payment_failed",
    "subscription.renewed": "renewal_receipt",
    "subscription.recovered": "renewal_receipt",
    "subscription.canceled": "canceled",
}

# What an endpoint may subscribe to: `*`, `<prefix>.*` or one exact event type (the API
# refuses anything else; `db.repositories.outbox.endpoint_wants` routes by them).
EVENT_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]*\.\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$")


class DeliveryRetry(BaseModel):
    """Backoff of webhook and email attempts (milliseconds; each attempt waits `backoff` times
    longer than the one before, up to `max_ms`). After `max_attempts` the delivery is failed."""

    initial_ms: int = 10_000
    max_ms: int = 3_600_000
    backoff: int = 2
    max_attempts: int = 30

    def delay_after(self, attempt: int) -> timedelta:
        """How long to wait after failed attempt number `attempt` (1-based) before the next."""
        ms = self.initial_ms * self.backoff ** max(attempt - 1, 0)
        return timedelta(milliseconds=min(ms, self.max_ms))


class NotificationOutcome(BaseModel):
    """delivered | sent (email) | retrying (try again later) | failed (the last attempt
    failed: given up) | duplicate (done before) | skipped (nothing to do)."""

    status: str
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None
