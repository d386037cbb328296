"""The README's walkthrough, run as written: its `sh` blocks, in order, in one bash with
`set -euo pipefail`, against the real `recur dev` (free ports, a temporary data directory),
with only the variables a reader would have (`RECUR_API`, `RECUR_TEMPORAL_ADDRESS`).
The admin key is the walkthrough's own default, as for a reader of `make dev`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.process import free_port
from tests.helpers import eventually_blocking

RECUR = str(Path(sys.executable).parent / "recur")
STARTUP_SECONDS = 90
WALKTHROUGH_SECONDS = 90


def walkthrough_script(readme: str) -> str:
    """The `sh` blocks of the README's "## Walkthrough" section, in order, as one script."""
    start = readme.index("\n## Walkthrough\n")
    end = readme.find("\n## ", start + 1)
    section = readme[start : end if end != -1 else len(readme)]
    blocks = re.findall(r"^```sh\n(.*?)^```$", section, re.S | re.M)
    assert len(blocks) >= 10, "the walkthrough's sh blocks were not found"
    return "set -euo pipefail\n" + "\n".join(blocks)


def section_script(readme: str, title: str) -> str:
    """The walkthrough's first `sh` block (the API's address, the key, `pick`), then the
    `sh` blocks of the README's section `title`, as one script."""
    start = readme.index("\n## Walkthrough\n")
    setup = re.findall(r"^```sh\n(.*?)^```$", readme[start:], re.S | re.M)[1]
    begin = readme.index(f"\n## {title}\n")
    end = readme.find("\n## ", begin + 1)
    blocks = re.findall(r"^```sh\n(.*?)^```$", readme[begin:end], re.S | re.M)
    assert len(blocks) >= 4, f"the sh blocks of {title!r} were not found"
    return "set -euo pipefail\n" + setup + "\n".join(blocks)


@dataclass
class Walk:
    stdout: str
    stderr: str
    returncode: int


@dataclass
class DevStack:
    env: dict[str, str]
    workdir: Path

    def walk(self, script: str) -> Walk:
        done = subprocess.run(
            ["bash", "-c", script],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=WALKTHROUGH_SECONDS,
            stdin=subprocess.DEVNULL,
        )
        return Walk(done.stdout, done.stderr, done.returncode)


@pytest.fixture(scope="module")
def dev_stack(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Iterator[DevStack]:
    tmp = tmp_path_factory.mktemp("walkthrough")
    ports = {name: free_port() for name in ("pg", "temporal", "ui", "stripe", "smtp", "api")}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECUR_")}
    temporal_address = f"127.0.0.1:{ports['temporal']}"  # not the default: --address must follow
    dev_env = {
        **clean,
        "RECUR_DATA_DIR": str(tmp / "data"),
        "RECUR_PG_PORT": str(ports["pg"]),
        "RECUR_TEMPORAL_ADDRESS": temporal_address,
        "RECUR_TEMPORAL_UI_PORT": str(ports["ui"]),
        "RECUR_STRIPE_PORT": str(ports["stripe"]),
        "RECUR_SMTP_PORT": str(ports["smtp"]),
        "RECUR_API_PORT": str(ports["api"]),
        "RECUR_WORKER_METRICS_PORT": "0",
        "RECUR_LOG_LEVEL": "WARNING",
    }
    out_path = tmp / "dev.out"
    with out_path.open("wb") as out:
        process = subprocess.Popen(
            [RECUR, "dev"],
            env=dev_env,
            cwd=repo_root,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:

        def up() -> bool:
            output = out_path.read_text(errors="replace")
            if process.poll() is not None:
                raise RuntimeError(f"recur dev exited:\n{output}")
            return "Recur is up" in output

        eventually_blocking(up, timeout=STARTUP_SECONDS, what="recur dev up")
        # The reader's shell, in the clone's directory: `.venv` is this test run's venv.
        workdir = tmp / "clone"
        workdir.mkdir()
        (workdir / ".venv").symlink_to(sys.prefix)
        reader_env = {
            **clean,
            "RECUR_API": f"http://127.0.0.1:{ports['api']}",
            "RECUR_TEMPORAL_ADDRESS": temporal_address,
        }
        yield DevStack(reader_env, workdir)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _in_order(output: str, expected: list[str]) -> None:
    """Each pattern matches a line of `output`, each after the previous one's line."""
    lines = output.splitlines()
    at = 0
    for pattern in expected:
        for i in range(at, len(lines)):
            if re.fullmatch(pattern, lines[i]):
                at = i + 1
                break
        else:
            raise AssertionError(f"no line {pattern!r} after line {at}:\n{output}")


def test_the_readme_walkthrough_runs_as_written(dev_stack: DevStack, repo_root: Path) -> None:
    script = walkthrough_script((repo_root / "README.md").read_text())
    walk = dev_stack.walk(script)
    assert walk.returncode == 0, f"stdout:\n{walk.stdout}\nstderr:\n{walk.stderr}"
    sub = r"sub_[0-9a-f]+"
    day = r"T00:00:00(?:Z|\+00:00)"  # whichever RFC 3339 form of UTC the API writes
    _in_order(
        walk.stdout,
        [
            r"temporal version .*",
            r"plan_demo_insider 1500 usd 7 posts,archive,discord",
            rf"{sub} trialing 2027-01-08{day}",
            rf"active 2027-02-08{day}",  # the trial's end was charged
            r"upgrade 2710 plan_demo_insider",  # the preview changed nothing
            r"upgrade paid 2710 plan_demo_patron",
            r"paused",
            rf"active 2027-01-22{day}",  # resumed: a new period
            r"active True",  # cancel at period end
            r"active False",  # reactivated
            rf"{sub} past_due 1 2027-01-09{day}",
            rf"{sub} past_due 1 2027-01-09{day}",
            rf"{sub} active",  # a working card: recovered
            r"failed 2 card_declined",  # support's retry, declined again
            rf"trialing 2027-01-15{day}",
            rf"trialing 2027-02-01{day}",  # extended
            rf"canceled 2027-01-22{day}",
            r"in_\w+ subscription_cancel_refund \w+ -?\d+ usd",
            r"\S+ subscription\.canceled key:key_admin_bootstrap",
            r"False",  # the canceled customer's archive
            r"True",  # the recovered customer's
            r"workflow state: active",  # Temporal, at RECUR_TEMPORAL_ADDRESS
            rf"{sub} canceled",
            rf"{sub} active",
            rf"{sub} past_due",
            rf"{sub} trialing",
        ],
    )


def test_a_broken_step_stops_the_walkthrough(dev_stack: DevStack, repo_root: Path) -> None:
    """The test above can fail: a request the API refuses stops the script with its error."""
    script = walkthrough_script((repo_root / "README.md").read_text())
    applied = '-d \'{"plan_id": "plan_demo_patron"}\''
    assert script.count(applied) == 1, "the upgrade the walkthrough applies"
    walk = dev_stack.walk(script.replace(applied, '-d \'{"plan_id": "plan_demo_nowhere"}\''))
    assert walk.returncode != 0, walk.stdout
    assert "resource_missing" in walk.stderr, walk.stderr
    assert "upgrade 2710 plan_demo_insider" in walk.stdout, "it ran up to the broken step"
    assert "paused" not in walk.stdout.splitlines(), "and no further"


def coupons_script(readme: str) -> str:
    """The walkthrough's setup block (API, K, J, pick), then the `sh` blocks of the README's
    "## Coupons and promotion codes" section, in order."""
    setup = re.findall(r"^```sh\n(.*?)^```$", readme, re.S | re.M)
    start = readme.index("\n## Coupons and promotion codes\n")
    end = readme.index("\n## ", start + 1)
    blocks = re.findall(r"^```sh\n(.*?)^```$", readme[start:end], re.S | re.M)
    assert len(blocks) == 2, "the coupon section's sh blocks were not found"
    pick = next(block for block in setup if "pick()" in block)
    return "set -euo pipefail\n" + pick + "\n".join(blocks)


def test_the_readme_coupon_examples_run_as_written(dev_stack: DevStack, repo_root: Path) -> None:
    walk = dev_stack.walk(coupons_script((repo_root / "README.md").read_text()))
    assert walk.returncode == 0, f"stdout:\n{walk.stdout}\nstderr:\n{walk.stderr}"
    time = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|\+00:00)"
    _in_order(
        walk.stdout,
        [
            r"SPRING25 25 True",
            r"500 usd forever",
            r"SPRING25 True",  # the code, found in lower case
            r"0 True",
            rf"SPRING25 {time}",  # redeemed with the code: three months from now
            time,  # replaced from now
            r"None",  # removed
            r"False",  # the code deactivated
            r"True False",  # the coupon deleted
        ],
    )


def test_the_items_and_balance_section_runs_as_written(
    dev_stack: DevStack, repo_root: Path
) -> None:
    script = section_script((repo_root / "README.md").read_text(), "Seats, items and the balance")
    walk = dev_stack.walk(script)
    assert walk.returncode == 0, f"stdout:\n{walk.stdout}\nstderr:\n{walk.stderr}"
    _in_order(
        walk.stdout,
        [
            r"active",
            r"plan_\w+ 3",
            r"ready",
            r"now 799",  # the preview
            r"paid 799",
            r"plan_\w+ 5",
            re.escape("0 [('proration', -1998), ('proration', 799), ('balance', 1199)]"),
            r"1199",
            r"ready",
            re.escape("399 [('subscription', 1598), ('balance', -1199)]"),
            r"manual 500 500",
            r"proration_credit 1199 in_\w+",
            r"applied_to_invoice -1199 in_\w+",
            r"manual 500 None",
        ],
    )


def test_the_usage_section_runs_as_written(dev_stack: DevStack, repo_root: Path) -> None:
    script = section_script((repo_root / "README.md").read_text(), "Usage-based billing")
    walk = dev_stack.walk(script)
    assert walk.returncode == 0, f"stdout:\n{walk.stdout}\nstderr:\n{walk.stderr}"
    _in_order(
        walk.stdout,
        [
            r"sum tokens",
            r"metered 1000",
            r"active",
            re.escape("1 1 ['unknown_customer']"),
            r"1200 400 2027-09-01T00:00:00Z",
            r"True 100000 1200 98800",
            r"ready",
            # The preview of the renewal: September's usage so far.
            re.escape("subscription_cycle [('usage', 400, 'Tokens: 1200, 2 package(s) of 1000')]"),
            r"ready",
            r"False",  # the late event, inside the grace
            r"ready",
            re.escape("subscription_cycle [('usage', 600, 'Tokens: 2100, 3 package(s) of 1000')]"),
            r"period_closed",
        ],
    )
