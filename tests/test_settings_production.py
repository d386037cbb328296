"""Production (`RECUR_SANDBOX=false`) refuses the published development defaults, naming
each offending variable; development (the default) keeps them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from config import DEV_ADMIN_KEY, DEV_STRIPE_WEBHOOK_SECRET, Settings

# Real-looking production values (none of them a published default).
PRODUCTION: dict[str, Any] = {
    "sandbox": False,
    "admin_key": "rk_live_admin_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "stripe_api_key": "sk_live_51HxYzAbCdEfGhIjKlMnOpQrStUvWxYz",
    "stripe_webhook_secret": "whsec_3kF9aQ2mZx7LpR4tW8vN1bC6yH5jD0sE",
    "database_url": "postgresql+psycopg://recur:s3cret@db.internal:5432/recur",
}


def _refusal(**overrides: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **{**PRODUCTION, **overrides})
    message = str(caught.value)
    assert "input_value" not in message, "the error echoes none of the values given"
    assert "s3cret" not in message
    return message


def test_production_with_real_values_is_accepted() -> None:
    settings = Settings(_env_file=None, **PRODUCTION)
    assert not settings.sandbox
    assert settings.effective_stripe_api_base is None, "api.stripe.com"


def test_development_keeps_its_defaults() -> None:
    settings = Settings(_env_file=None)
    assert settings.sandbox
    assert settings.admin_key == DEV_ADMIN_KEY
    assert settings.stripe_webhook_secret == DEV_STRIPE_WEBHOOK_SECRET
    assert settings.uses_localstripe


def test_production_with_every_dev_default_names_each_variable() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, sandbox=False)
    message = str(caught.value)
    for variable in ("RECUR_ADMIN_KEY", "RECUR_STRIPE_WEBHOOK_SECRET", "RECUR_STRIPE_API_KEY"):
        assert variable in message
    assert "RECUR_SANDBOX=false" in message


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"admin_key": DEV_ADMIN_KEY}, "RECUR_ADMIN_KEY"),
        ({"admin_key": "rk_dev_admin_1111111111111111111111111111"}, "RECUR_ADMIN_KEY"),
        ({"stripe_webhook_secret": DEV_STRIPE_WEBHOOK_SECRET}, "RECUR_STRIPE_WEBHOOK_SECRET"),
        ({"stripe_webhook_secret": ""}, "RECUR_STRIPE_WEBHOOK_SECRET"),
        ({"stripe_api_key": "sk_test_recur_localstripe"}, "RECUR_STRIPE_API_KEY"),
        ({"stripe_api_base": "http://localstripe:8420"}, "RECUR_STRIPE_API_BASE"),
        ({"stripe_api_base": "http://127.0.0.1:8420"}, "RECUR_STRIPE_API_BASE"),
        ({"stripe_api_base": "http://localhost:8420/"}, "RECUR_STRIPE_API_BASE"),
        ({"stripe_api_base": "http://[::1]:8420"}, "RECUR_STRIPE_API_BASE"),
        ({"stripe_api_base": "http://0.0.0.0:8420"}, "RECUR_STRIPE_API_BASE"),
    ],
)
def test_production_refuses_each_dev_default(overrides: dict[str, Any], variable: str) -> None:
    message = _refusal(**overrides)
    assert variable in message
    others = {"RECUR_ADMIN_KEY", "RECUR_STRIPE_WEBHOOK_SECRET", "RECUR_STRIPE_API_KEY"}
    for other in others - {variable}:
        assert other not in message, "only the offending variable is named"
    secret = next(iter(overrides.values()))
    if secret.startswith(("rk_", "whsec_", "sk_")):
        assert secret not in message, "the refusal does not print the secret itself"


def test_production_accepts_a_stripe_proxy_that_is_not_localstripe() -> None:
    settings = Settings(
        _env_file=None, **PRODUCTION, stripe_api_base="https://stripe-egress.internal.example"
    )
    assert settings.effective_stripe_api_base == "https://stripe-egress.internal.example"


def test_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `recur api` / `recur worker` read at start-up: RECUR_* variables."""
    monkeypatch.setenv("RECUR_SANDBOX", "false")
    monkeypatch.setenv("RECUR_ADMIN_KEY", DEV_ADMIN_KEY)
    monkeypatch.setenv("RECUR_STRIPE_API_KEY", PRODUCTION["stripe_api_key"])
    monkeypatch.setenv("RECUR_STRIPE_WEBHOOK_SECRET", PRODUCTION["stripe_webhook_secret"])
    with pytest.raises(ValidationError, match="RECUR_ADMIN_KEY"):
        Settings(_env_file=None)
    monkeypatch.setenv("RECUR_ADMIN_KEY", PRODUCTION["admin_key"])
    assert not Settings(_env_file=None).sandbox
