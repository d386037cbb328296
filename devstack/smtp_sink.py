"""A local SMTP sink: accepts every message and stores it as a .eml file to read."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from devstack.process import Child, port_open, wait_until


class MaildirHandler:
    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        maildir.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        name = f"{time.time_ns()}-{envelope.rcpt_tos[0].replace('/', '_')}.eml"
        (self.maildir / name).write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted"


def start_smtp_sink(*, port: int, maildir: Path, log_path: Path) -> Child:
    argv = [
        sys.executable,
        "-m",
        "devstack.smtp_sink",
        "--port",
        str(port),
        "--maildir",
        str(maildir),
    ]
    child = Child("smtp", argv, log_path).start()

    def ready() -> bool:
        child.ensure_alive()
        return port_open("127.0.0.1", port)

    wait_until(ready, "the SMTP sink")
    return child


def main() -> None:
    parser = argparse.ArgumentParser(description="Recur's development SMTP sink")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--maildir", type=Path, default=Path(".data/mail"))
    args = parser.parse_args()
    controller = Controller(MaildirHandler(args.maildir), hostname="127.0.0.1", port=args.port)
    controller.start()
    print(f"SMTP sink on 127.0.0.1:{args.port}, writing to {args.maildir}", flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
