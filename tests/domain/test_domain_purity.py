"""The domain package stays pure: stdlib and pydantic only, no clock reads."""

import ast
import sys
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "domain"
ALLOWED_THIRD_PARTY = {"pydantic", "domain"}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "time_ns", "monotonic", "random", "uuid4"}


def _modules() -> list[Path]:
    return sorted(DOMAIN.glob("*.py"))


def test_domain_imports_only_stdlib_and_pydantic() -> None:
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root in sys.stdlib_module_names or root in ALLOWED_THIRD_PARTY, (
                    f"{path.name} imports {name}"
                )


def test_domain_never_reads_the_clock_or_randomness() -> None:
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                assert node.attr not in FORBIDDEN_CALLS, f"{path.name} uses .{node.attr}"


def test_domain_has_no_float_literals() -> None:
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant):
                assert not isinstance(node.value, float), f"{path.name} has a float literal"
