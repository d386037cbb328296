"""The worker's workflow runner follows RECUR_WORKFLOW_SANDBOX."""

from __future__ import annotations

from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from config import Settings
from worker import SANDBOX_PASSTHROUGH, workflow_runner


def test_sandboxed_by_default_with_the_pure_modules_passed_through() -> None:
    runner = workflow_runner(Settings())
    assert isinstance(runner, SandboxedWorkflowRunner)
    assert set(SANDBOX_PASSTHROUGH) <= runner.restrictions.passthrough_modules


def test_sandbox_can_be_turned_off() -> None:
    runner = workflow_runner(Settings(workflow_sandbox=False))
    assert isinstance(runner, UnsandboxedWorkflowRunner)
