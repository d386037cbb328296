"""`recur dev`: start the whole stack on embedded defaults, supervise it, stop it cleanly.

A worker or API that dies is started again with backoff; an infrastructure child that dies
stops the stack (`devstack/restarts.py`). With `infra_only` only the infrastructure runs,
and the environment a worker and an API started by hand need is printed.
"""

from __future__ import annotations

import asyncio
import shlex
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from config import DEV_ADMIN_KEY, Settings
from devstack.postgres import start_postgres
from devstack.preflight import DataDirLock, StackInUse, check, ports_to_claim
from devstack.process import Child, port_open, wait_until
from devstack.restarts import Supervisor
from devstack.smtp_sink import start_smtp_sink
from devstack.stripe_fake import start_localstripe
from devstack.temporal import start_temporal


class Stop(Exception):
    """Raised by the signal handler to unwind into an orderly shutdown."""


def _env_for_children(settings: Settings) -> dict[str, str]:
    env = {
        "RECUR_DATABASE_URL": settings.effective_database_url,
        "RECUR_TEMPORAL_ADDRESS": settings.temporal_address,
        "RECUR_ADMIN_KEY": settings.admin_key,
    }
    if settings.effective_stripe_api_base:
        env["RECUR_STRIPE_API_BASE"] = settings.effective_stripe_api_base
    if settings.smtp_url is None:
        env["RECUR_SMTP_URL"] = f"smtp://127.0.0.1:{settings.smtp_port}"
    return env


def _bootstrap(settings: Settings) -> None:
    from api.bootstrap import ensure_admin_key, seed_demo_catalog
    from db.engine import get_engine
    from db.migrate import upgrade

    upgrade(settings.effective_database_url)

    async def seed() -> None:
        engine = get_engine(settings.effective_database_url)
        await ensure_admin_key(engine, settings.admin_key)
        await seed_demo_catalog(engine)
        await engine.dispose()

    asyncio.run(seed())


def _env_by_hand(settings: Settings) -> dict[str, str]:
    """What a shell needs to run `recur worker` and `recur api` against `--infra-only`."""
    env = _env_for_children(settings)
    env["RECUR_SMTP_URL"] = settings.effective_smtp_url
    if settings.temporal_namespace != "default":
        env["RECUR_TEMPORAL_NAMESPACE"] = settings.temporal_namespace
    env["RECUR_API_HOST"] = settings.api_host
    env["RECUR_API_PORT"] = str(settings.api_port)
    return env


def run_dev(settings: Settings, *, infra_only: bool = False) -> int:
    data = settings.data_dir.resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    host, _, port = settings.temporal_address.rpartition(":")
    temporal_reused = port_open(host or "127.0.0.1", int(port))
    lock = DataDirLock(data)
    try:
        ports = ports_to_claim(settings, infra_only=infra_only, temporal_reused=temporal_reused)
        check(settings, data, ports, lock)
    except StackInUse as refused:
        print(refused, file=sys.stderr, flush=True)
        return 1
    try:
        return _run(settings, data, logs, infra_only=infra_only, temporal_reused=temporal_reused)
    finally:
        lock.release()


def _run(
    settings: Settings, data: Path, logs: Path, *, infra_only: bool, temporal_reused: bool
) -> int:
    supervisor = Supervisor(say)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if settings.database_url is None:
            say(f"PostgreSQL      127.0.0.1:{settings.pg_port}, data in {data / 'postgres'}")
            supervisor.add(
                start_postgres(data / "postgres", settings.pg_port, logs / "postgres.log"),
                restart=False,
            )
        else:
            say("PostgreSQL      using RECUR_DATABASE_URL")
        if temporal_reused:
            say(f"Temporal        already listening on {settings.temporal_address}; reusing it")
        else:
            say(f"Temporal        starting dev server on {settings.temporal_address}")
            supervisor.add(
                start_temporal(
                    port=int(settings.temporal_address.rpartition(":")[2]),
                    ui_port=settings.temporal_ui_port,
                    log_path=logs / "temporal.log",
                    db_file=data / "temporal.db",
                    namespace=settings.temporal_namespace,
                ),
                restart=False,
            )
        if settings.uses_localstripe and settings.stripe_api_base is None:
            say(f"Stripe          localstripe on 127.0.0.1:{settings.stripe_port}")
            supervisor.add(
                start_localstripe(
                    port=settings.stripe_port,
                    log_path=logs / "localstripe.log",
                    store=data / "localstripe.pickle",
                ),
                restart=False,
            )
        else:
            say("Stripe          using the configured Stripe API")
        if settings.smtp_url is None:
            say(
                f"Email           SMTP sink 127.0.0.1:{settings.smtp_port}, mail in {data / 'mail'}"
            )
            supervisor.add(
                start_smtp_sink(
                    port=settings.smtp_port, maildir=data / "mail", log_path=logs / "smtp.log"
                ),
                restart=False,
            )
        say("Migrations      applying; seeding demo catalog and admin key")
        _bootstrap(settings)
        if infra_only:
            _tell_infra_only(settings, logs)
        else:
            _start_app(settings, supervisor, logs)
        while supervisor.check() is None:
            time.sleep(0.5)
        return 1  # an infrastructure child died (check() said which)
    except Stop as why:
        say(f"\nStopping ({why}) ...")
        return 0
    except Exception as err:
        say(f"recur dev failed: {err}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(supervisor.children):
            child.stop()
            say(f"stopped {child.name}")


def _start_app(settings: Settings, supervisor: Supervisor, logs: Path) -> None:
    """The worker and the API, restarted when they die; wait for the API to answer."""
    env = _env_for_children(settings)
    worker = Child("worker", [sys.executable, "-m", "worker"], logs / "worker.log", env=env)
    supervisor.add(worker.start(), restart=True)
    # `recur api` itself: how the API is served (uvicorn, its loop) is decided there.
    api_argv = [
        sys.executable, "-m", "cli", "api",
        "--host", settings.api_host, "--port", str(settings.api_port),
    ]  # fmt: skip
    api = supervisor.add(Child("api", api_argv, logs / "api.log", env=env).start(), restart=True)

    def api_up() -> bool:
        api.ensure_alive()
        return port_open(settings.api_host, settings.api_port)

    wait_until(api_up, "the API")
    base = f"http://{settings.api_host}:{settings.api_port}"
    say("")
    say(f"Recur is up.   API docs:    {base}/docs")
    say(f"               Temporal UI: http://127.0.0.1:{settings.temporal_ui_port}")
    key_note = " (the dev default)" if settings.admin_key == DEV_ADMIN_KEY else ""
    say(f"               Admin key:   {settings.admin_key}{key_note}")
    say(f"               Logs:        {logs}")
    say(f"               worker pid {worker.pid}, API pid {api.pid}")
    say("A worker or API that dies is started again. Ctrl-C stops everything.")
    say("")
    say("Next, in another shell:")
    say(f"  export RECUR_ADMIN_KEY={shlex.quote(settings.admin_key)}")
    say(f'  curl -s -H "Authorization: Bearer $RECUR_ADMIN_KEY" {base}/v1/plans')
    say("  .venv/bin/recur status     # what the CLI talks to; .venv/bin/recur --help")
    say("try: the README's walkthrough of a subscription's lifecycle, step by step with curl")


def _tell_infra_only(settings: Settings, logs: Path) -> None:
    say("")
    say("Infrastructure is up (no worker, no API). Run them by hand, each in a shell with:")
    for name, value in _env_by_hand(settings).items():
        say(f"  export {name}={shlex.quote(value)}")
    say("  recur worker      # or: python -m worker")
    say(f"  recur api         # docs at http://{settings.api_host}:{settings.api_port}/docs")
    say(f"Temporal UI: http://127.0.0.1:{settings.temporal_ui_port}   Logs: {logs}")
    say("Ctrl-C stops everything.")


def say(line: str) -> None:
    print(line, flush=True)
