"""Outbound SMTP with a few connections to the relay kept open between emails.

Opening a connection per email costs a TCP handshake, the greeting, EHLO (and STARTTLS
and AUTH when configured) and QUIT: more round trips than the message itself, and relays
limit how often a client may connect. A renewal storm sends one receipt per renewal, so
the worker keeps up to `pool_size` connections and reuses them.

A pooled connection that has sat idle may have been closed by the relay (RFC 5321 lets a
server drop a client after a few minutes). It is checked with NOOP before reuse once it
has been idle for `check_after_seconds`, and dropped unused after `max_idle_seconds`, so a
stale connection costs one round trip instead of a failed send. A send that fails for any
reason drops its connection and raises: `Deliveries` records the attempt and the outbox
dispatcher tries it again after its backoff, exactly as with a fresh connection per email.

Every header value goes out on one line (folding aside): a CR or LF in a value, from a name
stored before the API refused them, would otherwise start a header of its own (a `Bcc:`
adding recipients) or end the header block; see `header_safe`.

`send` blocks; call it from a thread (`asyncio.to_thread`). Connections are used by one
thread at a time.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import Message
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class RelayAddress:
    host: str
    port: int
    secure: bool  # smtps:// (TLS from the first byte)
    starttls: bool
    username: str | None
    password: str

    @classmethod
    def parse(cls, url: str) -> RelayAddress:
        """smtp://[user:pass@]host[:port][?starttls=true] or smtps://…"""
        parts = urlsplit(url)
        secure = parts.scheme == "smtps"
        options = parse_qs(parts.query)
        starttls = options.get("starttls", ["false"])[0].lower() in ("1", "true", "yes")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (465 if secure else 25),
            secure=secure,
            starttls=starttls and not secure,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password or ""),
        )


@dataclass
class _Idle:
    smtp: smtplib.SMTP
    since: float  # time.monotonic() when it was last used


class SmtpRelay:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        timeout: float = 30.0,
        check_after_seconds: float = 5.0,
        max_idle_seconds: float = 60.0,
    ) -> None:
        self.address = RelayAddress.parse(url)
        self.pool_size = pool_size
        self.timeout = timeout
        self.check_after_seconds = check_after_seconds
        self.max_idle_seconds = max_idle_seconds
        self._idle: list[_Idle] = []
        self._lock = threading.Lock()
        self.connections_opened = 0  # for tests and benchmarks

    def send(self, message: Message) -> None:
        _make_headers_safe(message)
        smtp = self._checkout() or self._connect()
        try:
            smtp.send_message(message)
        except BaseException:
            _close(smtp)
            raise
        self._checkin(smtp)

    def close(self) -> None:
        """Say QUIT on every idle connection (the worker is stopping)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for entry in idle:
            _close(entry.smtp)

    # ------------------------------------------------------------------ pool

    def _checkout(self) -> smtplib.SMTP | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                entry = self._idle.pop()  # the most recently used: least likely stale
            idle_for = time.monotonic() - entry.since
            if idle_for > self.max_idle_seconds:
                _close(entry.smtp)
                continue
            if idle_for >= self.check_after_seconds and not _alive(entry.smtp):
                _close(entry.smtp)
                continue
            return entry.smtp

    def _checkin(self, smtp: smtplib.SMTP) -> None:
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(_Idle(smtp, time.monotonic()))
                return
        _close(smtp)

    def _connect(self) -> smtplib.SMTP:
        a = self.address
        smtp: smtplib.SMTP = (
            smtplib.SMTP_SSL(a.host, a.port, timeout=self.timeout, context=_tls())
            if a.secure
            else smtplib.SMTP(a.host, a.port, timeout=self.timeout)
        )
        try:
            if a.starttls:
                smtp.starttls(context=_tls())
            if a.username is not None:
                smtp.login(a.username, a.password)
        except BaseException:
            _close(smtp)
            raise
        with self._lock:
            self.connections_opened += 1
        return smtp


# A line break not followed by a space or tab does not fold the header: it ends it.
_BREAK = re.compile(r"(?:\r\n|\r|\n)+(?![ \t])")
# Other control characters (TAB aside) and the Unicode line separators.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


def header_safe(value: str) -> str:
    """`value` with every line break that would not fold it, and every other control
    character, made a space. Folding (a break followed by a space, as RFC 2047 encoded words
    are folded) is kept, so long encoded headers keep short lines."""
    return _CONTROL.sub(" ", _BREAK.sub(" ", value))


def _make_headers_safe(message: Message) -> None:
    items = message.items()
    if all(not isinstance(v, str) or header_safe(v) == v for _, v in items):
        return  # the usual case: nothing to rewrite
    for name in dict.fromkeys(name for name, _ in items):
        del message[name]
    for name, value in items:  # in their order, repeated headers included
        message[name] = header_safe(value) if isinstance(value, str) else value


def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def _alive(smtp: smtplib.SMTP) -> bool:
    try:
        code, _ = smtp.noop()
    except (smtplib.SMTPException, OSError):
        return False
    return code == 250


def _close(smtp: smtplib.SMTP) -> None:
    """QUIT if the relay still listens; close the socket regardless."""
    with contextlib.suppress(smtplib.SMTPException, OSError):
        smtp.quit()
    with contextlib.suppress(OSError):
        smtp.close()
