"""Recur's one settings object: every knob is an environment variable `RECUR_*`."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from collections.abc import Callable, Coroutine, Mapping, MutableMapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar, cast
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Published development values: fine in a sandbox, refused in production (`_dev_defaults`).
DEV_ADMIN_KEY = "rk_dev_admin_0000000000000000000000000000"
DEV_STRIPE_WEBHOOK_SECRET = "whsec_recur_dev"


class Settings(BaseSettings):
    """Runtime configuration. Defaults run the embedded development stack."""

    # A refused setting's error never echoes the values given (secrets among them).
    model_config = SettingsConfigDict(
        env_prefix="RECUR_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    # Where `recur dev` keeps its state (PostgreSQL cluster, Temporal SQLite file, logs).
    data_dir: Path = Path(".data")

    # PostgreSQL: unset means "start the embedded server on pg_port".
    database_url: str | None = None
    pg_port: int = 54329

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    task_queue: str = "recur"

    # Stripe: unset key (or an sk_test_ key with api_base set) means localstripe.
    stripe_api_key: str = "sk_test_recur_localstripe"
    stripe_api_base: str | None = None
    stripe_port: int = 8420
    stripe_webhook_secret: str = DEV_STRIPE_WEBHOOK_SECRET
    # How old a `Stripe-Signature` timestamp may be (seconds) before the event is refused.
    stripe_webhook_tolerance_seconds: int = Field(default=300, gt=0)

    # Worker: Prometheus endpoint for Temporal SDK and business metrics (0 = off); how many
    # workflows stay in its sticky cache; whether workflow code runs in the SDK's
    # determinism sandbox (off by default for its CPU cost, README "Performance"; the
    # tests and the replay test always run sandboxed, and a static check holds every
    # workflows/ module to the determinism rules).
    worker_metrics_port: int = 9464
    # Where that endpoint listens: loopback by default (it has no authentication); set
    # 0.0.0.0 where Prometheus scrapes from another host (a container, say).
    worker_metrics_host: str = "127.0.0.1"
    worker_max_cached_workflows: int = 1000
    workflow_sandbox: bool = False
    # Python's cyclic garbage collector in the worker: its first-generation threshold. A
    # larger threshold than Python's 700 spares the sticky cache frequent full collections;
    # too large a one keeps evicted workflows' garbage alive (bench/RESULTS.md, findings).
    worker_gc_threshold: int = Field(default=3_000, ge=1)
    # The event loop of the worker and API processes: uvloop, or "asyncio" (the standard
    # library's) should a platform or a debugger need it.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    # API; how often it looks for subscriptions whose workflow a create could not start (and
    # how old such a start must be: a request may still be starting it).
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    admin_key: str = DEV_ADMIN_KEY
    api_key_cache_seconds: float = 30.0
    start_sweep_seconds: float = 5.0
    # How long a request keeps sending a workflow update through a dead worker, a
    # restarting Temporal server or a failing workflow task before it gives up (503).
    update_deadline_seconds: float = Field(default=120.0, gt=0)
    # Test clocks: how long an advance request waits for its subscriptions before it answers
    # with those still behind, and how long a clock may stay `advancing` with no request
    # driving it before the API's sweeper finishes the advance itself.
    clock_advance_deadline_seconds: float = Field(default=300.0, gt=0)
    clock_sweep_seconds: float = Field(default=10.0, gt=0)
    clock_sweep_grace_seconds: float = Field(default=30.0, ge=0)
    # How often the API looks for live subscriptions whose workflow has closed.
    orphan_check_seconds: float = Field(default=300.0, gt=0)
    # The API-key cache holds at most this many verified keys; unknown keys are remembered
    # apart, briefly (a key unknown now may be created a moment later by another process)
    # and at most `api_key_unknown_cache_size` of them; a client address with
    # `auth_failure_limit` failed authentications within `auth_failure_window_seconds` gets
    # 429 until the window ends; at most `auth_throttle_clients` addresses are tracked (the
    # least recently seen are dropped).
    api_key_cache_size: int = Field(default=10_000, ge=1)
    api_key_unknown_cache_seconds: float = Field(default=5.0, gt=0)
    api_key_unknown_cache_size: int = Field(default=10_000, ge=1)
    auth_failure_limit: int = Field(default=20, ge=1)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0)
    auth_throttle_clients: int = Field(default=100_000, ge=1)
    # `Idempotency-Key`: how long a record is kept; how long a reservation whose request
    # never answered (its process died) holds the key; how long a duplicate sent while the
    # first request runs waits for its answer before a 409 `idempotency_in_progress`.
    idempotency_ttl_hours: float = Field(default=24.0, gt=0)
    idempotency_lock_seconds: float = Field(default=60.0, gt=0)
    idempotency_wait_seconds: float = Field(default=5.0, ge=0)

    # Email
    smtp_url: str | None = None
    smtp_port: int = 8025
    email_from: str = "billing@recur.local"

    # Outbound notifications (webhooks and email): backoff of retried deliveries, how many
    # attempts before a delivery is marked failed; the worker's outbox dispatcher: how many
    # deliveries it makes at once, how often it looks for deliveries queued by other
    # processes (those of its own process wake it), how long it waits after a wake-up so
    # a burst goes out in one batch, how long a claim lasts (longer than any one attempt).
    webhook_retry_initial_ms: int = 10_000
    webhook_retry_max_ms: int = 3_600_000
    webhook_max_attempts: int = 30
    webhook_timeout_seconds: float = 10.0
    outbox_concurrency: int = 32
    outbox_poll_seconds: float = 1.0
    outbox_linger_ms: int = Field(default=200, ge=0)
    outbox_lease_seconds: int = 300
    # Whether webhook endpoints may be loopback, private, link-local or metadata addresses
    # (domain/webhook_targets.py). Unset: allowed in a sandbox (local receivers in `recur
    # dev` and the tests), refused in production; set it to decide either way.
    webhook_allow_private_targets: bool | None = None

    # Inbound Stripe events (the Stripe inbox, drained by every worker): how long one signal
    # may take, the backoff of a hand-off that failed, how many tries a workflow that is
    # missing (its subscription not ended) gets before the event is flagged for support,
    # how often the drainer looks, how long a claim lasts.
    stripe_signal_timeout_seconds: float = 5.0
    stripe_inbox_retry_initial_ms: int = 1_000
    stripe_inbox_retry_max_ms: int = 600_000
    stripe_inbox_max_attempts: int = 30
    stripe_inbox_poll_seconds: float = 1.0
    stripe_inbox_lease_seconds: int = 120

    # Behaviour. `sandbox` is the one switch between development and production: true (the
    # default, for `recur dev` and the tests) allows test clocks and the published dev
    # defaults; false is production, and refuses them (`_dev_defaults`).
    sandbox: bool = True
    log_level: str = "INFO"
    log_json: bool = True
    incomplete_expiry_hours: int = 23
    trial_will_end_days: int = 3
    max_plan_changes_per_period: int = 3
    dunning_retry_hours: list[int] = Field(default=[24, 48, 96, 144, 192, 240, 288, 336])
    dunning_exhausted_action: str = "cancel"
    # What a cancel requested through Temporal (the UI's "Request Cancellation") refunds.
    temporal_cancel_refund: Literal["none", "prorated"] = "none"
    # How long after a period ends its usage is still counted (late events) before the
    # renewal invoice with its usage lines is finalized and charged; clock time.
    usage_grace_seconds: int = Field(default=3600, ge=0)

    @model_validator(mode="after")
    def _no_dev_defaults_in_production(self) -> Settings:
        problems = [] if self.sandbox else _dev_defaults(self)
        if problems:
            raise ValueError(
                "RECUR_SANDBOX=false (production) refuses development defaults: "
                + "; ".join(problems)
                + ". Set real values, or RECUR_SANDBOX=true for development."
            )
        return self

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy URL, embedded server included."""
        if self.database_url:
            return self.database_url
        return f"postgresql+psycopg://recur@127.0.0.1:{self.pg_port}/recur"

    @property
    def effective_smtp_url(self) -> str:
        """Where email goes; unset means the dev SMTP sink on smtp_port."""
        return self.smtp_url or f"smtp://127.0.0.1:{self.smtp_port}"

    @property
    def effective_stripe_api_base(self) -> str | None:
        """Where the stripe SDK sends requests; None means api.stripe.com."""
        if self.stripe_api_base:
            return self.stripe_api_base
        if self.uses_localstripe:
            return f"http://127.0.0.1:{self.stripe_port}"
        return None

    @property
    def allows_private_webhook_targets(self) -> bool:
        if self.webhook_allow_private_targets is None:
            return self.sandbox
        return self.webhook_allow_private_targets

    @property
    def uses_localstripe(self) -> bool:
        """True when no real Stripe key was configured."""
        return self.stripe_api_key.startswith("sk_test_recur")


def _dev_defaults(settings: Settings) -> list[str]:
    """What in `settings` is a published development value (each naming its variable)."""
    problems: list[str] = []
    if settings.admin_key == DEV_ADMIN_KEY or settings.admin_key.startswith("rk_dev_"):
        problems.append("RECUR_ADMIN_KEY is the published development admin key")
    if settings.stripe_webhook_secret in ("", DEV_STRIPE_WEBHOOK_SECRET):
        problems.append("RECUR_STRIPE_WEBHOOK_SECRET is unset or the published dev secret")
    if settings.uses_localstripe:
        problems.append("RECUR_STRIPE_API_KEY is the localstripe placeholder")
    if settings.stripe_api_base and _is_local_host(urlsplit(settings.stripe_api_base).hostname):
        problems.append("RECUR_STRIPE_API_BASE points at localstripe or a loopback address")
    return problems


def _is_local_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.lower().rstrip(".")
    if host in ("localhost", "localstripe") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


# Keys whose values never reach a log line, whatever logged them (also as the last part of
# a longer name: `stripe_api_key`, `card_number`).
_SECRET_KEYS = frozenset(
    {"authorization", "api_key", "key", "secret", "password", "token", "card", "number", "cvc"}
)
_BEARER = re.compile(r"(?i)bearer\s+\S+")
# API keys and webhook secrets: their characters are URL-safe and standard base64.
_API_KEY = re.compile(r"\b(rk|sk|whsec)_[A-Za-z0-9_+/=-]{6,}")
# Stripe's ids of payment instruments (a payment method, card, source, token, bank account)
# and the client secrets of intents (`pi_…_secret_…`); at least 14 characters after the
# prefix, so that decline codes such as `card_declined` stay readable.
_PAYMENT_ID = re.compile(r"\b(pm|card|src|tok|ba)_[A-Za-z0-9]{14,}")
_CLIENT_SECRET = re.compile(r"_secret_[A-Za-z0-9]+")
_PAN = re.compile(r"\b\d{13,19}\b|\b\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7}\b")
_SHORTEST_SECRET = len("bearer x")


def redact_secrets(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-looking fields and bearer/API-key/card-looking
    strings, in nested values too. It runs after `format_exc_info`, so a traceback (and an
    exception's message, SQLAlchemy's included) is masked like any other string."""
    for name, value in list(event.items()):
        if name != "event" and _secret_name(name):
            event[name] = "[redacted]"
        else:
            event[name] = _redact_value(value)
    return event


def _secret_name(name: object) -> bool:
    lowered = str(name).lower()
    return lowered in _SECRET_KEYS or lowered.rpartition("_")[2] in _SECRET_KEYS


def _redact_value(value: object) -> object:
    if isinstance(value, str):
        return _mask(value) if len(value) >= _SHORTEST_SECRET else value
    if isinstance(value, BaseException):
        return _mask(f"{type(value).__name__}: {value}")
    if isinstance(value, Mapping):
        return {k: "[redacted]" if _secret_name(k) else _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    return value


def _mask(value: str) -> str:
    value = _BEARER.sub("Bearer [redacted]", value)
    value = _API_KEY.sub(r"\1_[redacted]", value)
    value = _PAYMENT_ID.sub(r"\1_[redacted]", value)
    value = _CLIENT_SECRET.sub("_secret_[redacted]", value)
    return _PAN.sub("[redacted-pan]", value)


class CurrentStream:
    """Writes to whatever `sys.<name>` is now, not the stream seen at configuration time
    (a replaced and closed stream must never make logging, and so an activity, fail)."""

    def __init__(self, name: Literal["stdout", "stderr"] = "stdout") -> None:
        self._name = name

    def _stream(self) -> TextIO:
        import sys

        return cast(TextIO, getattr(sys, self._name))

    def write(self, text: str) -> int:
        return self._stream().write(text)

    def flush(self) -> None:
        self._stream().flush()


_T = TypeVar("_T")


class _RedactingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler `configure_logging` installs (told apart from any other)."""


def run_loop(main: Coroutine[Any, Any, _T], settings: Settings) -> _T:
    """Run `main` to completion on the configured event loop (`settings.event_loop`)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if settings.event_loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def configure_gc(threshold: int) -> None:
    """Collect young objects less often, and never again scan what exists now.

    Call once the process has imported and built what it runs with: `gc.freeze` moves
    every object alive at that point (modules, classes, the SDK's tables) out of the
    collector's sight, so the full collections a growing sticky cache sets off only scan
    objects made since. Cycles are still collected; a long-lived object is only looked at
    less often.
    """
    import gc

    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(threshold, middle, oldest)


def configure_logging(settings: Settings | None = None) -> None:
    """JSON (or console) output with secrets redacted, for structlog and the standard
    library's loggers alike (uvicorn, the Temporal SDK, SQLAlchemy, stripe); idempotent.

    Exceptions are formatted first and redacted after, so a traceback is masked like any
    other string (SQLAlchemy's bound parameters are also hidden at the source: db/engine.py).
    """
    import structlog

    settings = settings or get_settings()
    level = logging.getLevelName(settings.log_level.upper())
    numeric = level if isinstance(level, int) else logging.INFO
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer()
    )
    last: list[structlog.typing.Processor] = [
        structlog.processors.format_exc_info,
        redact_secrets,
        renderer,
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *last,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, CurrentStream())),
        cache_logger_on_first_use=False,
    )
    handler = _RedactingHandler(cast(TextIO, CurrentStream()))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *last],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        # Ours from an earlier call, and a plain `basicConfig` stream handler (unredacted).
        if isinstance(old, _RedactingHandler) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # uvicorn installs its own handlers (plain text, tracebacks of unhandled errors
    # included); its records go through the redacting handler instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # The Stripe SDK logs two INFO lines per request (path and status, nothing our own
    # `charge.finished` lacks): two lines per renewal in a storm. Its warnings still show,
    # and all of it at DEBUG.
    logging.getLogger("stripe").setLevel(
        numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    )
