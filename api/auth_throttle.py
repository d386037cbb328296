"""Throttling of failed authentication, per client address.

A client whose presented API keys fail `auth_failure_limit` times within a window of
`auth_failure_window_seconds` (counted from its first failure) is answered 429 until that
window ends, for any key this process has not verified recently (`KeyCache.cached`): a
guess is not even looked up, so the answer tells nothing about it. At most
`auth_throttle_clients` addresses are tracked, so memory is bounded whatever the traffic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from cachetools import TTLCache

from config import Settings


@dataclass
class _Window:
    failures: int
    ends: float  # time.monotonic() at which the client's window closes


class AuthThrottle:
    def __init__(self, limit: int, window_seconds: float, max_clients: int) -> None:
        self._limit = limit
        self._window = window_seconds
        # An entry lives one window from its first failure: later failures mutate it in
        # place, which does not extend its life (a fixed window, not a sliding one).
        self._clients: TTLCache[str, _Window] = TTLCache(maxsize=max_clients, ttl=window_seconds)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthThrottle:
        return cls(
            settings.auth_failure_limit,
            settings.auth_failure_window_seconds,
            settings.auth_throttle_clients,
        )

    def __len__(self) -> int:
        return len(self._clients)

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until `client` may authenticate again; None if it may now."""
        window = self._clients.get(client)
        if window is None or window.failures < self._limit:
            return None
        return max(1, math.ceil(window.ends - time.monotonic()))

    def failed(self, client: str) -> None:
        window = self._clients.get(client)
        if window is None:
            self._clients[client] = _Window(1, time.monotonic() + self._window)
        else:
            window.failures += 1
