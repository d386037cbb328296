"""The production compose file and Dockerfile hold together (no Docker engine needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from config import Settings
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
