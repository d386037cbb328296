"""A loopback HTTP/1.1 proxy between the worker and localstripe that injects faults.

It reads each request whole (headers, then a Content-Length body), so it knows which
request is a charge (`POST /v1/payment_intents`), and can, per request:

* hold it before forwarding, or hold Stripe's reply before relaying it (`delay`,
  `reply_delay`): a window in which the caller can be killed while Stripe has charged;
* close the caller's connection without forwarding (`drop_before`): Stripe saw nothing;
* forward it, let Stripe answer, then close the caller's connection without relaying the
  answer (`drop_after`): Stripe charged, the caller only sees a broken connection;
* answer a charge itself with a card decline (`declines`): a bank saying no once.

Counters and `wait_for` let a test time a kill to "Stripe has answered a request".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field

CHARGE = b"POST /v1/payment_intents "


@dataclass
class StripeFaults:
    """What the proxy does to requests; probabilities apply per request."""

    delay: float = 0.0  # before forwarding any request
    reply_delay: float = 0.0  # before relaying any reply
    drop_before: float = 0.0  # any request: not forwarded, connection closed
    drop_after: float = 0.0  # charges: forwarded, answered by Stripe, reply dropped
    declines: int = 0  # the next `declines` charges are answered 402 card_declined
    seed: int = 17


@dataclass
class StripeProxy:
    upstream_host: str
    upstream_port: int
    faults: StripeFaults = field(default_factory=StripeFaults)
    counts: Counter[str] = field(default_factory=Counter)
    _server: asyncio.Server | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _rng: random.Random = field(default_factory=random.Random)
    _conns: set[asyncio.StreamWriter] = field(default_factory=set)
    port: int = 0

    async def start(self, port: int = 0) -> StripeProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_faults(self, faults: StripeFaults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._conns):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def wait_for(self, name: str, at_least: int, timeout: float) -> bool:
        """Until counter `name` reaches `at_least` (True), or `timeout` passes (False)."""

        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: self.counts[name] >= at_least)

        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            return False
        return True

    async def _bump(self, name: str) -> None:
        async with self._changed:
            self.counts[name] += 1
            self._changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                request = await _read_message(reader)
                if request is None:
                    return
                upstream = await self._handle(request, writer, upstream)
                if upstream is None:
                    return  # the connection was dropped on purpose
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return
        finally:
            self._conns.discard(writer)
            writer.close()
            if upstream is not None:
                upstream[1].close()

    async def _handle(
        self,
        request: bytes,
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Serve one request; the upstream connection to keep, None to drop the caller."""
        f = self.faults
        charge = request.startswith(CHARGE)
        await self._bump("requests")
        if charge:
            await self._bump("charges")
        if f.delay:
            await asyncio.sleep(f.delay)
        if self._rng.random() < f.drop_before:
            await self._bump("dropped_before")
            return None
        if charge and f.declines > 0:
            f.declines -= 1
            await self._bump("declined")
            writer.write(_decline())
            await writer.drain()
            return None
        if upstream is None:
            upstream = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        up_reader, up_writer = upstream
        up_writer.write(request)
        await up_writer.drain()
        reply = await _read_message(up_reader)
        if reply is None:
            return None
        await self._bump("answered")
        if charge:
            await self._bump("charges_answered")
        if f.reply_delay:
            await asyncio.sleep(f.reply_delay)
        if charge and self._rng.random() < f.drop_after:
            await self._bump("dropped_after")
            up_writer.close()
            return None
        writer.write(reply)
        await writer.drain()
        return upstream


async def _read_message(reader: asyncio.StreamReader) -> bytes | None:
    """One HTTP/1.1 message (request or reply) with its body; None at a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as err:
        if err.partial:
            raise
        return None
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (
            line.decode("latin-1").partition(":") for line in head.split(b"\r\n")[1:] if line
        )
    }
    if "content-length" in headers:
        return head + await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            body += size_line + chunk
            if size == 0:
                return head + body
    if head.startswith(b"HTTP/"):
        return head + await reader.read()  # a reply without length ends with the connection
    return head


def _decline() -> bytes:
    body = json.dumps(
        {
            "error": {
                "type": "card_error",
                "code": "card_declined",
                "message": "Your card was declined.",
            }
        }
    ).encode()
    return (
        b"HTTP/1.1 402 Payment Required\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
