"""Logs never carry secrets; /metrics speaks Prometheus; /readyz checks its dependencies."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import structlog

from config import Settings, configure_logging, redact_secrets


def test_redaction_keeps_secrets_out_of_log_output(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_json=True, log_level="INFO"))
    secret_key = "rk_prod_Zq8xN3vL0pW2sT5yB7uK1mR4"
    card_number = "4242424242424242"
    structlog.get_logger().info(
        "charge.debug",
        api_key=secret_key,
        authorization=f"Bearer {secret_key}",
        note=f"customer typed {card_number} and sent sk_live_abcdef123456 by mistake",
        stripe_secret="whsec_abcdefghijkl",
        amount=1500,
    )
    out = capsys.readouterr().out
    line = json.loads(out.strip().splitlines()[-1])
    assert line["event"] == "charge.debug"
    assert line["amount"] == 1500, "ordinary fields stay"
    for leaked in (secret_key, card_number, "sk_live_abcdef123456", "whsec_abcdefghijkl"):
        assert leaked not in out


def test_redaction_by_field_name_and_by_what_a_value_looks_like() -> None:
    event = redact_secrets(
        None,
        "info",
        {
            "event": "Bearer abc.def",
            "Stripe_API_Key": "x",
            "card_number": 4242424242424242,
            "cvc": "123",
            "monkey": "banana split",
            "keystone": "sk_test_0123456789",
            "header": "bearer   tok.en",
            "short": "sk_1",
            "amount": 1500,
        },
    )
    assert event == {
        "event": "Bearer [redacted]",
        "Stripe_API_Key": "[redacted]",
        "card_number": "[redacted]",
        "cvc": "[redacted]",
        "monkey": "banana split",
        "keystone": "sk_[redacted]",
        "header": "Bearer [redacted]",
        "short": "sk_1",
        "amount": 1500,
    }


@pytest.mark.parametrize(
    ("ours", "stripes"),
    [("INFO", logging.WARNING), ("DEBUG", logging.DEBUG), ("ERROR", logging.ERROR)],
)
def test_the_stripe_sdk_logs_only_warnings_unless_we_debug(ours: str, stripes: int) -> None:
    configure_logging(Settings(log_json=True, log_level=ours))
    assert logging.getLogger("stripe").getEffectiveLevel() == stripes
    configure_logging(Settings(log_json=True, log_level="INFO"))


async def test_metrics_count_requests_by_route_template(app_client: httpx.AsyncClient) -> None:
    await app_client.get("/v1/plans")
    await app_client.get("/v1/subscriptions/sub_does_not_exist")
    body = (await app_client.get("/metrics")).text
    assert 'recur_api_requests_total{method="GET",route="/v1/plans",status="200"}' in body
    assert 'route="/v1/subscriptions/{subscription_id}",status="404"' in body
    assert "sub_does_not_exist" not in body, "raw ids never become label values"
    assert "recur_api_request_duration_seconds_bucket" in body


async def test_request_id_is_echoed(app_client: httpx.AsyncClient) -> None:
    response = await app_client.get("/healthz", headers={"x-request-id": "req-123"})
    assert response.headers["x-request-id"] == "req-123"


async def test_readyz_checks_postgres_and_temporal(app_client: httpx.AsyncClient) -> None:
    body = (await app_client.get("/readyz")).json()
    assert body == {
        "ready": True,
        "checks": {"postgres": "ok", "temporal": "ok"},
        "orphaned_subscriptions": None,  # not counted yet: the first count is a while off
    }
