"""`recur` operator commands against the running test stack (real processes, real API)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import httpx

from tests.helpers import make_clock, make_customer, make_plan, ok, subscribe
from tests.ops.conftest import LiveApi

RECUR = str(Path(sys.executable).parent / "recur")


async def recur(live: LiveApi, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        RECUR, *args, env=live.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_keys_create_list_revoke(live_api: LiveApi) -> None:
    code, out, _ = await recur(
        live_api, "keys", "create", "--role", "support", "--name", "cli-test"
    )
    assert code == 0, out
    key_id = re.search(r"id:\s+(key_\w+)", out).group(1)  # type: ignore[union-attr]
    raw = re.search(r"key:\s+(rk_\S+)", out).group(1)  # type: ignore[union-attr]
    async with httpx.AsyncClient(base_url=live_api.base_url) as client:
        allowed = await client.get("/v1/plans", headers={"Authorization": f"Bearer {raw}"})
        assert allowed.status_code == 200

    code, out, _ = await recur(live_api, "keys", "list")
    assert code == 0
    assert key_id in out and "support" in out and raw not in out

    code, out, _ = await recur(live_api, "keys", "revoke", key_id)
    assert code == 0 and f"revoked {key_id}" in out
    code, _, err = await recur(live_api, "keys", "revoke", "key_nope")
    assert code == 1 and "no API key key_nope" in err
    code, _, err = await recur(live_api, "keys", "create", "--role", "superuser")
    assert code == 1 and "role must be one of" in err


async def test_subs_list_show_retry_cancel(
    live_api: LiveApi, app_client: httpx.AsyncClient
) -> None:
    api = app_client
    from datetime import UTC, datetime

    plan = await make_plan(api, amount=1100, trial_days=1)
    customer = await make_customer(api, "pm_card_chargeCustomerFail")
    clock = await make_clock(api, datetime(2027, 6, 1, tzinfo=UTC))
    sub = await subscribe(
        api, customer_id=customer["id"], plan_id=plan["id"], test_clock_id=clock["id"]
    )
    ok(
        await api.post(
            f"/v1/test_clocks/{clock['id']}/advance", json={"frozen_time": "2027-06-02T00:00:00Z"}
        )
    )

    code, out, _ = await recur(
        live_api, "subs", "list", "--status", "past_due", "--customer", customer["id"]
    )
    assert code == 0 and sub["id"] in out and "past_due" in out

    code, out, _ = await recur(live_api, "subs", "show", sub["id"])
    assert code == 0
    assert "invoice.payment_failed" in out and "subscription.past_due" in out
    assert "1100" in out and "open" in out

    code, out, _ = await recur(live_api, "subs", "retry-payment", sub["id"])
    assert code == 2, "a declined retry is a failure exit"
    assert "failed" in out and "attempt 2" in out

    code, out, _ = await recur(live_api, "subs", "cancel", sub["id"], "--now")
    assert code == 0 and "canceled" in out
    code, _, err = await recur(live_api, "subs", "show", "sub_missing")
    assert code == 1 and "404 resource_missing" in err
