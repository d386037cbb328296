"""The worker's workflow runner follows RECUR_WORKFLOW_SANDBOX."""

from __future__ import annotations

from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from config import Settings
from worker import SANDBOX_PASSTHROUGH, workflow_runner


def test_unsandboxed_by_default() -> None:
    assert isinstance(workflow_runner(Settings()), UnsandboxedWorkflowRunner)


def test_sandbox_on_request_with_the_pure_modules_passed_through() -> None:
    runner = workflow_runner(Settings(workflow_sandbox=True))
    assert isinstance(runner, SandboxedWorkflowRunner)
    assert set(SANDBOX_PASSTHROUGH) <= runner.restrictions.passthrough_modules
