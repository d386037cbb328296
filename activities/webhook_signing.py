"""Outbound webhook signatures: the Standard Webhooks scheme.

Each delivery carries `webhook-id` (the event id: the same on every retry, so a receiver
deduplicates by it), `webhook-timestamp` (unix seconds) and `webhook-signature`
(`v1,<base64 HMAC-SHA256>` over `f"{id}.{timestamp}.{body}"`), so a receiver verifies it
with any Standard Webhooks library, Python's `standardwebhooks.Webhook(secret).verify(...)`
among them.

An endpoint's secret is `whsec_` and the base64 of its key. Secrets issued before this
scheme (`whsec_` and 48 hex digits) are valid base64 too: they sign as the 36 bytes they
decode to, which is what a receiver's library derives from the same string, so they keep
working unchanged.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
# The scheme asks for keys of 24 to 64 bytes.
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh endpoint secret in the scheme's `whsec_<base64>` form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signed_headers(secret: str, message_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`, sent as message `message_id` at `at`
    (timezone-aware)."""
    signature = Webhook(secret).sign(message_id, at, body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }
