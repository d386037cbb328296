"""Verifying `Stripe-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>`."""

from __future__ import annotations

import hashlib
import hmac


class SignatureError(Exception):
    pass


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The header Stripe would send for `payload` at `timestamp` (used by tests and tools)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(payload: bytes, header: str | None, secret: str, now: int, tolerance: int = 300) -> None:
    """Raise `SignatureError` unless one v1 signature matches and the timestamp is fresh."""
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("malformed timestamp") from None
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("no timestamp or v1 signature in Stripe-Signature")
    if abs(now - timestamp) > tolerance:
        raise SignatureError("timestamp outside the tolerance window")
    expected = sign(payload, secret, timestamp).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("no signature matches")
