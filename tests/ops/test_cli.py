"""`recur` operator commands against the running test stack (real processes, real API).

Exit codes (README, "Operating Recur"): 0 ok, 1 unexpected, 2 usage, 3 not found,
4 rejected, 5 payment declined, 6 API or database out of reach.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from devstack.process import free_port
from tests.api.usage_support import event, make_meter, metered_plan
from tests.helpers import eventually, make_clock, make_customer, make_plan, ok, subscribe
from tests.ops.conftest import LiveApi

RECUR = str(Path(sys.executable).parent / "recur")


async def recur(live: LiveApi, *args: str, **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        RECUR,
        *args,
        env={**live.env, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=180)
    return process.returncode or 0, out.decode(), err.decode()


async def recur_json(live: LiveApi, *args: str) -> Any:
    code, out, err = await recur(live, *args, "--json")
    assert code == 0, f"{args}: exit {code}\n{out}\n{err}"
    return json.loads(out)


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
    listed = await recur_json(live_api, "keys", "list")
    assert {"id": key_id, "role": "support"}.items() <= next(
        k for k in listed if k["id"] == key_id
    ).items()
    made = await recur_json(live_api, "keys", "create", "--role", "product")
    assert made["role"] == "product" and made["key"].startswith("rk_")

    code, out, _ = await recur(live_api, "keys", "revoke", key_id)
    assert code == 0 and f"revoked {key_id}" in out
    code, _, err = await recur(live_api, "keys", "revoke", "key_nope")
    assert code == 3 and "no API key key_nope" in err, "not found: 3"
    code, _, err = await recur(live_api, "keys", "create", "--role", "superuser")
    assert code == 2 and "role must be one of" in err, "a bad argument is a usage error"


async def test_subs_list_show_retry_cancel(
    live_api: LiveApi, app_client: httpx.AsyncClient
) -> None:
    api = app_client
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
    assert "11.00 USD" in out and "open" in out, "amounts with their currency"
    shown = await recur_json(live_api, "subs", "show", sub["id"])
    assert shown["subscription"]["status"] == "past_due"
    assert shown["invoices"][0]["total"] == 1100 and shown["invoices"][0]["currency"] == "usd"

    code, out, _ = await recur(live_api, "subs", "retry-payment", sub["id"])
    assert code == 5, "a declined retry is exit 5, not the usage error's 2"
    assert "failed" in out and "attempt 2" in out and "11.00 USD" in out
    code, out, _ = await recur(live_api, "subs", "retry-payment", sub["id"], "--json")
    assert code == 5 and json.loads(out)["status"] == "failed"

    code, out, _ = await recur(live_api, "subs", "cancel", sub["id"], "--now")
    assert code == 0 and "canceled" in out
    code, _, err = await recur(live_api, "subs", "cancel", sub["id"], "--now")
    assert code == 4 and "409 subscription_canceled" in err, "a refused operation is 4"
    code, _, err = await recur(live_api, "subs", "show", "sub_missing")
    assert code == 3 and "404 resource_missing" in err
    assert f"GET {live_api.base_url}/v1/subscriptions/sub_missing" in err, "the address"
    code, _, err = await recur(live_api, "subs", "show", "sub_missing", "--json")
    error = json.loads(err)["error"]
    assert error["code"] == "resource_missing" and error["exit_code"] == 3


async def test_every_lifecycle_operation_with_json_and_currency(
    live_api: LiveApi, app_client: httpx.AsyncClient
) -> None:
    api = app_client
    basic = await make_plan(api, amount=1100, trial_days=14)
    premium = await make_plan(api, amount=2500)
    customer = await make_customer(api, "pm_card_visa")

    trial = await recur_json(
        live_api, "subs", "create", "--customer", customer["id"], "--plan", basic["id"]
    )
    assert trial["status"] == "trialing"
    later = (datetime.fromisoformat(trial["trial_end"]) + timedelta(days=7)).date()
    extended = await recur_json(
        live_api, "subs", "extend-trial", trial["id"], "--until", later.isoformat()
    )
    assert extended["trial_end"].startswith(later.isoformat())

    sub = await recur_json(
        live_api,
        "subs", "create", "--customer", customer["id"], "--plan", basic["id"],
        "--trial-days", "0",
    )  # fmt: skip
    assert sub["status"] == "active"

    code, out, _ = await recur(
        live_api, "subs", "change-plan", sub["id"], premium["id"], "--preview"
    )
    assert code == 0, out
    assert "preview" in out and " USD" in out, out
    assert (await recur_json(live_api, "subs", "show", sub["id"]))["subscription"][
        "plan_id"
    ] == basic["id"], "a preview changes nothing"
    changed = await recur_json(
        live_api, "subs", "change-plan", sub["id"], premium["id"], "--when", "now"
    )
    assert changed["subscription"]["plan_id"] == premium["id"]

    paused = await recur_json(live_api, "subs", "pause", sub["id"])
    assert paused["status"] == "paused"
    resumed = await recur_json(live_api, "subs", "resume", sub["id"])
    assert resumed["status"] == "active"

    code, out, _ = await recur(live_api, "subs", "cancel", sub["id"], "--at-period-end")
    assert code == 0 and "cancels at period end" in out, out
    reactivated = await recur_json(live_api, "subs", "reactivate", sub["id"])
    assert reactivated["cancel_at_period_end"] is False

    updated = await recur_json(
        live_api, "customers", "payment-method", customer["id"], "pm_card_visa"
    )
    assert updated["default_payment_method"] not in (None, customer["default_payment_method"])
    again = await recur_json(live_api, "subs", "payment-method", sub["id"], "pm_card_visa")
    assert again["id"] == customer["id"]
    assert again["default_payment_method"] != updated["default_payment_method"]
    assert (await recur_json(live_api, "customers", "show", customer["id"]))["id"] == customer["id"]

    canceled = await recur_json(live_api, "subs", "cancel", sub["id"], "--now")
    assert canceled["status"] == "canceled"
    listed = await recur_json(live_api, "subs", "list", "--customer", customer["id"])
    assert {s["id"] for s in listed} == {trial["id"], sub["id"]}


async def test_version_switches_and_usage_errors(live_api: LiveApi) -> None:
    code, out, _ = await recur(live_api, "--version")
    assert code == 0 and re.fullmatch(r"recur \d+\.\d+\.\d+\S*\n", out), out

    code, out, _ = await recur(live_api, "subs", "cancel", "--help")
    assert code == 0
    assert "--now / --at-period-end" in out and "--refund / --no-refund" in out, out
    assert "<bool>" not in out, "a switch takes no value"
    code, _, err = await recur(live_api, "subs", "cancel", "sub_x", "--now", "true")
    assert code == 2 and "unexpected extra argument" in err.lower(), err
    code, _, err = await recur(live_api, "subs", "cancel", "sub_x", "--refund")
    assert code == 2 and "--refund needs --now" in err, err
    code, _, err = await recur(live_api, "subs", "pause", "sub_x", "--resumes-at", "soon")
    assert code == 2, err


async def test_the_target_address_is_named_when_out_of_reach_and_by_status(
    live_api: LiveApi,
) -> None:
    nobody = free_port()
    code, _, err = await recur(live_api, "subs", "list", RECUR_API_PORT=str(nobody))
    assert code == 6, err
    assert f"cannot reach the Recur API at http://127.0.0.1:{nobody}" in err
    assert "RECUR_API_HOST and RECUR_API_PORT" in err and "Traceback" not in err

    dead_db = f"postgresql+psycopg://recur:s3cret@127.0.0.1:{nobody}/recur"
    code, _, err = await recur(live_api, "keys", "list", RECUR_DATABASE_URL=dead_db)
    assert code == 6, err
    assert f"cannot reach PostgreSQL at postgresql+psycopg://recur:***@127.0.0.1:{nobody}" in err
    assert "s3cret" not in err and "Traceback" not in err
    code, _, err = await recur(live_api, "migrate", RECUR_DATABASE_URL=dead_db)
    assert code == 6 and f"127.0.0.1:{nobody}" in err and "Traceback" not in err, err
    migrated = await recur_json(live_api, "migrate")
    assert migrated["migrations"] == "applied" and "127.0.0.1" in migrated["database"]

    status = await recur_json(live_api, "status")
    assert status["api"] == {"url": live_api.base_url, "state": "ready"}
    assert status["database"]["state"] == "reachable"
    assert status["temporal"]["address"] == live_api.env["RECUR_TEMPORAL_ADDRESS"]
    assert live_api.env["RECUR_ADMIN_KEY"] not in json.dumps(status), "the key is a secret"
    code, out, _ = await recur(live_api, "status", RECUR_API_PORT=str(nobody))
    assert code == 6 and f"http://127.0.0.1:{nobody}  unreachable" in out, out

    code, _, err = await recur(live_api, "--verbose", "subs", "list")
    assert code == 0 and f"GET {live_api.base_url}/v1/subscriptions" in err, err


async def test_subs_reconcile_lists_and_repairs_a_terminated_workflow(
    live_api: LiveApi, app_client: httpx.AsyncClient
) -> None:
    from temporalio.client import Client

    from workflows.converter import data_converter
    from workflows.messages import workflow_id_for

    api = app_client
    plan = await make_plan(api, amount=800)
    customer = await make_customer(api)
    sub = await subscribe(api, customer_id=customer["id"], plan_id=plan["id"])
    temporal = await Client.connect(
        live_api.env["RECUR_TEMPORAL_ADDRESS"], data_converter=data_converter
    )
    await temporal.get_workflow_handle(workflow_id_for(sub["id"])).terminate("cli test")
    # The visibility store catches up within moments.
    found: list[dict[str, Any]] = await eventually(
        lambda: recur_json(live_api, "subs", "reconcile"),
        lambda rows: any(r["subscription_id"] == sub["id"] for r in rows),
    )
    mine = next(r for r in found if r["subscription_id"] == sub["id"])
    assert mine["workflow_status"] == "terminated" and mine["repaired"] is False

    repaired = await recur_json(live_api, "subs", "reconcile", "--repair")
    assert any(r["subscription_id"] == sub["id"] and r["repaired"] for r in repaired)
    after = ok(await api.get(f"/v1/subscriptions/{sub['id']}"))
    assert after["status"] == "canceled"
    remaining = await recur_json(live_api, "subs", "reconcile")
    assert all(r["subscription_id"] != sub["id"] for r in remaining)


async def test_subs_usage_shows_the_current_period(
    live_api: LiveApi, app_client: httpx.AsyncClient
) -> None:
    api = app_client
    meter = await make_meter(api, "sum", value_property="tokens")
    metered = await metered_plan(api, meter, 200, package_size=1000)
    customer = await make_customer(api, "pm_card_visa")
    sub = await subscribe(api, customer_id=customer["id"], items=[{"plan_id": metered["id"]}])
    ok(await api.post("/v1/usage_events", json=event(customer["id"], "c1", tokens=1500)), 202)

    shown = await recur_json(live_api, "subs", "usage", sub["id"])
    assert shown == ok(await api.get(f"/v1/subscriptions/{sub['id']}/usage"))
    assert [(u["quantity"], u["amount"]) for u in shown] == [(1500, 400)]
    code, out, _ = await recur(live_api, "subs", "usage", sub["id"])
    assert code == 0, out
    assert meter["id"] in out and "1500" in out and "4.00 USD" in out, out
