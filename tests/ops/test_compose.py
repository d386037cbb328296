"""The production compose file and Dockerfile hold together (no Docker engine needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from config import DEV_ADMIN_KEY, DEV_STRIPE_WEBHOOK_SECRET, Settings
from workflows.search_attributes import SEARCH_ATTRIBUTE_TYPES

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    return dict(env) if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_every_component_is_there_with_health_checks() -> None:
    services = _compose()["services"]
    for name in (
        "temporal",
        "temporal-db",
        "temporal-ui",
        "db",
        "migrate",
        "api",
        "worker",
        "localstripe",
    ):
        assert name in services, name
    for name in ("temporal", "temporal-db", "temporal-ui", "db", "api", "worker", "localstripe"):
        assert "healthcheck" in services[name], f"{name} has no health check"
    assert services["localstripe"]["profiles"] == ["sandbox"]
    assert services["migrate"]["command"] == ["recur", "migrate"]
    assert services["worker"]["command"] == ["recur", "worker"]


def test_dependencies_exist_and_gate_start_up() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert (
        services["worker"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    )


def test_app_services_are_configured_only_through_known_recur_variables() -> None:
    services = _compose()["services"]
    known = {f"RECUR_{name.upper()}" for name in Settings.model_fields}
    for name in ("migrate", "api", "worker"):
        env = _env(services[name])
        assert env, f"{name} has no environment"
        for key in env:
            assert key in known, f"{name}: {key} is not a Settings field"
        assert env["RECUR_TEMPORAL_ADDRESS"] == "temporal:7233"
        assert env["RECUR_DATABASE_URL"].startswith("postgresql+psycopg://")


def test_search_attributes_registered_match_the_code() -> None:
    command = " ".join(_compose()["services"]["temporal-search-attributes"]["command"])
    for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
        assert f"{name}={kind}" in command


def test_worker_gets_time_to_drain_and_dockerfile_copies_the_code() -> None:
    worker = _compose()["services"]["worker"]
    grace = worker["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > 30, "longer than the worker's 30 s drain"
    dockerfile = (ROOT / "Dockerfile").read_text()
    for path in (
        "domain",
        "workflows",
        "activities",
        "api",
        "db",
        "worker.py",
        "cli.py",
        "config.py",
    ):
        assert f"{path}" in dockerfile
    assert "USER recur" in dockerfile


_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")

PRODUCTION_ENV = {
    "RECUR_ADMIN_KEY": "rk_live_admin_9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "RECUR_STRIPE_API_KEY": "sk_live_51HxYzAbCdEfGhIjKlMnOpQrStUvWxYz",
    "RECUR_STRIPE_WEBHOOK_SECRET": "whsec_3kF9aQ2mZx7LpR4tW8vN1bC6yH5jD0sE",
}


def _interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}` (all the file uses)."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        given = variables.get(name, "")
        if op == ":?" and not given:
            raise LookupError(f"{name}: {arg}")
        return given or (arg if op == ":-" else "")

    return _VARIABLE.sub(one, value)


def _app_env(variables: dict[str, str]) -> dict[str, str]:
    api = _env(_compose()["services"]["api"])
    return {key: _interpolate(str(value), variables) for key, value in api.items()}


def _sandbox_env() -> dict[str, str]:
    lines = (ROOT / "sandbox.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_nothing_outside_the_sandbox_profile_defaults_to_localstripe_or_dev_secrets() -> None:
    services = _compose()["services"]
    published = ("localstripe", DEV_STRIPE_WEBHOOK_SECRET, "sk_test_recur", DEV_ADMIN_KEY)
    for name, service in services.items():
        if "sandbox" in service.get("profiles", []):
            continue
        text = yaml.safe_dump(service)
        for value in published:
            assert value not in text, f"{name} defaults to {value}"
    api = _env(services["api"])
    for variable in PRODUCTION_ENV:
        assert ":?" in api[variable], f"{variable} must be set, it has no default"


def test_the_stack_needs_its_secrets() -> None:
    for missing in PRODUCTION_ENV:
        given = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
        with pytest.raises(LookupError, match=missing):
            _app_env(given)


def test_the_stack_with_real_secrets_is_a_valid_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in _app_env(PRODUCTION_ENV).items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert not settings.sandbox
    assert settings.effective_stripe_api_base is None, "real Stripe, not localstripe"
    assert not settings.allows_private_webhook_targets


def test_the_sandbox_env_file_points_at_localstripe_and_only_works_as_a_sandbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _compose()["services"]["localstripe"]["profiles"] == ["sandbox"]
    sandbox = _sandbox_env()
    for key, value in _app_env(sandbox).items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.sandbox
    assert settings.effective_stripe_api_base == "http://localstripe:8420"
    monkeypatch.setenv("RECUR_SANDBOX", "false")
    with pytest.raises(ValidationError, match="RECUR_STRIPE_API_BASE"):
        Settings(_env_file=None)
