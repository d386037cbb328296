"""The worker's garbage collector tuning (`config.configure_gc`), in a process of its own
so the test process keeps Python's defaults."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from config import Settings

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import gc, json
from config import configure_gc
before = gc.get_threshold()
configure_gc(12345)
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_configure_gc_raises_the_young_threshold_and_freezes_what_exists() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    probe = json.loads(out.stdout)
    assert probe["before"][0] == 700, "the probe starts from Python's default"
    assert probe["after"] == [12345, probe["before"][1], probe["before"][2]]
    assert probe["frozen"] > 10_000, "the imported modules' objects are frozen"


def test_the_threshold_is_a_positive_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECUR_WORKER_GC_THRESHOLD", "20000")
    assert Settings().worker_gc_threshold == 20_000
    monkeypatch.setenv("RECUR_WORKER_GC_THRESHOLD", "0")
    with pytest.raises(ValidationError):
        Settings()
