"""`recur dev`: start the whole stack on embedded defaults, supervise it, stop it cleanly."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from types import FrameType

from config import DEV_ADMIN_KEY, Settings
from devstack.postgres import start_postgres
from devstack.process import Child, port_open, wait_until
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


def run_dev(settings: Settings) -> int:
    data = settings.data_dir.resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    children: list[Child] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if settings.database_url is None:
            say(f"PostgreSQL      127.0.0.1:{settings.pg_port}, data in {data / 'postgres'}")
            children.append(
                start_postgres(data / "postgres", settings.pg_port, logs / "postgres.log")
            )
        else:
            say("PostgreSQL      using RECUR_DATABASE_URL")
        host, _, port = settings.temporal_address.rpartition(":")
        if port_open(host or "127.0.0.1", int(port)):
            say(f"Temporal        already listening on {settings.temporal_address}; reusing it")
        else:
            say(f"Temporal        starting dev server on {settings.temporal_address}")
            children.append(
                start_temporal(
                    port=int(port),
                    ui_port=settings.temporal_ui_port,
                    log_path=logs / "temporal.log",
                    db_file=data / "temporal.db",
                    namespace=settings.temporal_namespace,
                )
            )
        if settings.uses_localstripe and settings.stripe_api_base is None:
            say(f"Stripe          localstripe on 127.0.0.1:{settings.stripe_port}")
            children.append(
                start_localstripe(
                    port=settings.stripe_port,
                    log_path=logs / "localstripe.log",
                    store=data / "localstripe.pickle",
                )
            )
        else:
            say("Stripe          using the configured Stripe API")
        if settings.smtp_url is None:
            say(
                f"Email           SMTP sink 127.0.0.1:{settings.smtp_port}, mail in {data / 'mail'}"
            )
            children.append(
                start_smtp_sink(
                    port=settings.smtp_port, maildir=data / "mail", log_path=logs / "smtp.log"
                )
            )
        say("Migrations      applying; seeding demo catalog and admin key")
        _bootstrap(settings)
        env = _env_for_children(settings)
        children.append(
            Child("worker", [sys.executable, "-m", "worker"], logs / "worker.log", env=env).start()
        )
        # `recur api` itself: how the API is served (uvicorn, its loop) is decided there.
        api_argv = [
            sys.executable, "-m", "cli", "api",
            "--host", settings.api_host, "--port", str(settings.api_port),
        ]  # fmt: skip
        api = Child("api", api_argv, logs / "api.log", env=env).start()
        children.append(api)

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
        say("Ctrl-C stops everything.")
        while True:
            for child in children:
                if not child.alive():
                    say(f"{child.name} exited unexpectedly; last lines of {child.log_path}:")
                    say(child.tail(20))
                    return 1
            time.sleep(1)
    except Stop as why:
        say(f"\nStopping ({why}) ...")
        return 0
    except Exception as err:
        say(f"recur dev failed: {err}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
            say(f"stopped {child.name}")


def say(line: str) -> None:
    print(line, flush=True)
