"""The HTTP transport of webhook deliveries: it connects only to addresses the policy allows.

The host of each connection is resolved here, every address it resolves to is checked
(`domain.webhook_targets.refusal`), and the connection is made to a checked address, not
to the name: a name whose DNS answer changes between a check and the connect (DNS
rebinding) cannot slip a private address in. TLS still verifies the certificate against
the URL's host name (httpcore hands the original host to the TLS handshake).

No proxy from the environment is used: the check must see the address actually connected.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

from domain.webhook_targets import Address, literal_address, refusal

# host, port -> the addresses it resolves to (IP literals as strings).
Resolver = Callable[[str, int], Awaitable[list[str]]]

_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


class TargetRefused(Exception):
    """The webhook's host is, or resolves to, an address the policy refuses."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"webhook target refused: {reason} address")
        self.reason = reason


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the address check in front of every TCP connect."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        self._allow_private = allow_private
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.checked_addresses(host, port, timeout)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # the next address, as a resolver's caller would
        assert failure is not None
        raise failure

    async def checked_addresses(self, host: str, port: int, timeout: float | None) -> list[Address]:
        """Every address `host` stands for; TargetRefused if the policy refuses any one."""
        literal = literal_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                found = await asyncio.wait_for(self._resolver(host, port), timeout)
            except (OSError, TimeoutError) as exc:
                raise httpcore.ConnectError("could not resolve the host") from exc
            addresses = [a for a in map(literal_address, found) if a is not None]
            if not addresses:
                raise httpcore.ConnectError("could not resolve the host")
        if not self._allow_private:
            for address in addresses:
                if (reason := refusal(address)) is not None:
                    raise TargetRefused(reason)
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("unix_socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool that uses `GuardedBackend`."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = system_resolver) -> None:
        super().__init__(trust_env=False, limits=_LIMITS)
        # httpx has no parameter for the pool's network backend: the pool it made is
        # replaced by the same pool with ours (requests and errors are still mapped by httpx).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=_LIMITS.max_connections,
            max_keepalive_connections=_LIMITS.max_keepalive_connections,
            keepalive_expiry=_LIMITS.keepalive_expiry,
            network_backend=GuardedBackend(allow_private=allow_private, resolver=resolver),
        )
