"""The worker's workflow runner follows RECUR_WORKFLOW_SANDBOX; the benchmarks' bare
baseline worker runs with the same worker settings."""

from __future__ import annotations

import pytest
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from bench.worker_proc import bare_options
from config import Settings
from worker import SANDBOX_PASSTHROUGH, WorkerOptions, worker_options, workflow_runner


def test_unsandboxed_by_default() -> None:
    assert isinstance(workflow_runner(Settings()), UnsandboxedWorkflowRunner)


def test_sandbox_on_request_with_the_pure_modules_passed_through() -> None:
    runner = workflow_runner(Settings(workflow_sandbox=True))
    assert isinstance(runner, SandboxedWorkflowRunner)
    assert set(SANDBOX_PASSTHROUGH) <= runner.restrictions.passthrough_modules


def _described(options: WorkerOptions) -> tuple[object, ...]:
    runner = options["workflow_runner"]
    passthrough = (
        frozenset(runner.restrictions.passthrough_modules)
        if isinstance(runner, SandboxedWorkflowRunner)
        else None
    )
    return (
        type(runner),
        passthrough,
        options["max_cached_workflows"],
        options["graceful_shutdown_timeout"],
    )


@pytest.mark.parametrize("sandbox", [False, True])
def test_the_benchmarks_bare_worker_runs_as_recurs_worker(sandbox: bool) -> None:
    """The storm's and the API benchmark's bare baseline worker takes Recur's worker
    settings (runner, sticky cache, shutdown), whatever RECUR_WORKFLOW_SANDBOX says."""
    settings = Settings(workflow_sandbox=sandbox, worker_max_cached_workflows=123)
    ours = _described(worker_options(settings))
    assert ours[0] is (SandboxedWorkflowRunner if sandbox else UnsandboxedWorkflowRunner)
    assert ours[2] == 123
    assert _described(bare_options(settings, "default")) == ours


def test_a_benchmark_sandbox_choice_applies_to_the_bare_worker_too() -> None:
    settings = Settings()
    assert isinstance(
        bare_options(settings, "original")["workflow_runner"], SandboxedWorkflowRunner
    )
    sandboxed = Settings(workflow_sandbox=True)
    assert isinstance(
        bare_options(sandboxed, "unsandboxed")["workflow_runner"], UnsandboxedWorkflowRunner
    )
