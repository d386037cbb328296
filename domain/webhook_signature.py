"""Signing of outbound webhooks: `Recur-Signature: t=<unix seconds>,v1=<hex>`.

v1 is HMAC-SHA256, keyed with the endpoint's secret, over `f"{t}.{body}"` where body is the
exact bytes of the request body. Receivers recompute it, compare in constant time and
reject timestamps too far from their own clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "Recur-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def compute(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def header_value(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={compute(secret, timestamp, body)}"


def verify(
    header: str,
    body: bytes,
    secret: str,
    *,
    now: int,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """True when one v1 signature in `header` matches and its timestamp is recent enough."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance:
        return False
    expected = compute(secret, timestamp, body)
    return any(hmac.compare_digest(expected, s) for s in signatures)
