"""Workflow code stays deterministic, checked on the source of every module in workflows/.

The SDK's sandbox checks this only for code it imports itself: the workflows' helper
modules are passed through it (see `worker.SANDBOX_PASSTHROUGH`), and the worker may run
without it (`RECUR_WORKFLOW_SANDBOX=false`). These rules hold for all of workflows/ either
way: no I/O or clock libraries imported, no clock, randomness or uuid read except through
`workflow.*`, no file or console access, no mutable state at module level (it would leak
from one workflow run to the next in a worker without the sandbox). The one exception: the
activity definitions, imported through `workflow.unsafe.imports_passed_through()` so that
workflow code can call activities by their functions; it references them, never runs them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
ALLOWED_IMPORTS = {
    "__future__",
    "asyncio",
    "collections",
    "dataclasses",
    "datetime",
    "enum",
    "functools",
    "itertools",
    "math",
    "re",
    "types",
    "typing",
    "temporalio",
    "pydantic",
    "domain",
    "workflows",
}
# Reads of the outside world. `workflow.now()`, `workflow.uuid4()` and `workflow.random()`
# are the deterministic versions, and a clock object's `.now()` is the test-clock-aware
# `WorkflowClock` (itself built on `workflow.now()`): those are allowed.
FORBIDDEN_ATTRIBUTES = {
    "now",
    "utcnow",
    "today",
    "time",
    "time_ns",
    "monotonic",
    "perf_counter",
    "random",
    "uuid1",
    "uuid4",
    "getenv",
    "environ",
}
FORBIDDEN_BUILTINS = {"open", "print", "input", "exec", "eval", "__import__"}
MUTABLE_LITERALS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def _deterministic_owner(node: ast.Attribute) -> bool:
    owner = node.value
    if isinstance(owner, ast.Name) and owner.id == "workflow":
        return True
    name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
    return node.attr == "now" and name.lstrip("_") == "clock"


# Imported only inside `workflow.unsafe.imports_passed_through()`: the activity definitions.
PASSED_THROUGH_IMPORTS = {"activities"}


def _modules() -> list[Path]:
    return sorted(WORKFLOWS.rglob("*.py"))


def _passed_through(tree: ast.AST) -> set[ast.AST]:
    """The import statements inside `with workflow.unsafe.imports_passed_through():`."""
    found: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any(
            isinstance(item.context_expr, ast.Call)
            and ast.unparse(item.context_expr.func) == "workflow.unsafe.imports_passed_through"
            for item in node.items
        ):
            found.update(n for n in node.body if isinstance(n, ast.Import | ast.ImportFrom))
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(WORKFLOWS)))
def test_workflow_module_is_deterministic(path: Path) -> None:
    tree = ast.parse(path.read_text())
    passed_through = _passed_through(tree)
    for node in ast.walk(tree):
        allowed = ALLOWED_IMPORTS | (PASSED_THROUGH_IMPORTS if node in passed_through else set())
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                assert root in allowed, f"{path.name}:{node.lineno} imports {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            root = node.module.split(".")[0]
            assert root in allowed, f"{path.name}:{node.lineno} imports {node.module}"
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            assert _deterministic_owner(node), (
                f"{path.name}:{node.lineno} reads .{node.attr} outside `workflow.`"
            )
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in FORBIDDEN_BUILTINS, (
                f"{path.name}:{node.lineno} calls {node.func.id}()"
            )
    for statement in tree.body:
        value = getattr(statement, "value", None)
        if isinstance(statement, ast.Assign | ast.AnnAssign) and isinstance(
            value, MUTABLE_LITERALS
        ):
            raise AssertionError(f"{path.name}:{statement.lineno} has mutable module state")


def test_the_rules_catch_what_they_are_for(tmp_path: Path) -> None:
    """The checker itself fails on each kind of violation (so a pass above means something)."""
    bad = {
        "clock.py": "from datetime import datetime\nx = datetime.now()\n",
        "sneaky.py": "import time\n",
        "clock_time.py": "def f(self):\n    return self._clock.time()\n",
        "io.py": "import httpx\n",
        "uuid.py": "import uuid\nx = uuid.uuid4()\n",
        "state.py": "CACHE = {}\n",
        "print.py": "print('hi')\n",
        "activity.py": "from activities.payments import PaymentActivities\n",
    }
    for name, source in bad.items():
        path = tmp_path / name
        path.write_text(source)
        with pytest.raises(AssertionError):
            test_workflow_module_is_deterministic(path)
    fine = tmp_path / "fine.py"
    fine.write_text(
        "from temporalio import workflow\nTERMINAL = frozenset({'a'})\n"
        "with workflow.unsafe.imports_passed_through():\n"
        "    from activities.payments import PaymentActivities\n"
        "def f(self):\n    return workflow.now(), workflow.uuid4(), self._clock.now()\n"
    )
    test_workflow_module_is_deterministic(fine)
