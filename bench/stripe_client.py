"""CPU per Stripe call: the stripe SDK's httpx client against its aiohttp client.

    .venv/bin/python -m bench.stripe_client --calls 300 --rounds 3

Starts localstripe on a free loopback port and, alternating the two clients for `--rounds`
rounds, creates and confirms `--calls` off-session PaymentIntents one after another (what
the charge activity does once per renewal). Reports the client process's CPU per call
(what the worker pays; localstripe runs in its own process) and the wall time per call.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import stripe

from bench.common import append_results, log, table
from devstack.process import free_port
from devstack.stripe_fake import start_localstripe

CLIENTS = {"httpx": stripe.HTTPXClient, "aiohttp": stripe.AIOHTTPClient}


async def one_round(kind: str, base: str, calls: int) -> tuple[float, float]:
    http: Any = CLIENTS[kind]()
    client = stripe.StripeClient(
        "sk_test_bench", base_addresses={"api": base}, max_network_retries=0, http_client=http
    )
    try:
        customer = await client.v1.customers.create_async({"email": "bench@example.com"})
        method = await client.v1.payment_methods.attach_async(
            "pm_card_visa", {"customer": customer.id}
        )
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(calls):
            params: Any = {
                "amount": 1000,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": method.id,
                "off_session": True,
                "confirm": True,
                "metadata": {"n": str(n)},
            }
            await client.v1.payment_intents.create_async(params, {"idempotency_key": f"{n}"})
        return (
            1000 * (time.process_time() - cpu) / calls,
            1000 * (time.perf_counter() - wall) / calls,
        )
    finally:
        await http.close_async()


async def run(args: argparse.Namespace) -> None:
    port = free_port()
    logs = Path(tempfile.mkdtemp(prefix="recur-bench-stripe-"))
    child = start_localstripe(port=port, log_path=logs / "localstripe.log")
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in CLIENTS}
    try:
        for r in range(args.rounds):
            for kind in CLIENTS:
                cpu, wall = await one_round(kind, f"http://127.0.0.1:{port}", args.calls)
                results[kind].append((cpu, wall))
                log(f"round {r + 1} {kind}: {cpu:.2f} ms CPU, {wall:.2f} ms wall per call")
    finally:
        child.stop()
    rows = [
        [
            kind,
            " / ".join(f"{cpu:.2f}" for cpu, _ in got),
            f"**{statistics.median(cpu for cpu, _ in got):.2f}**",
            f"{statistics.median(wall for _, wall in got):.2f}",
        ]
        for kind, got in results.items()
    ]
    body = [
        f"{args.calls} PaymentIntents (create + confirm, off-session) per round, one after "
        f"another, {args.rounds} rounds alternating the clients, against localstripe.",
        "",
        *table(["client", "CPU ms per call, by round", "median CPU ms", "median wall ms"], rows),
    ]
    print(append_results("Stripe client CPU per call", body, record=not args.no_record))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-record", action="store_true")
    asyncio.run(run(parser.parse_args()))
