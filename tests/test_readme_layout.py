"""The README's Layout table matches the tree: every top-level entry, every path it names."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _layout_rows() -> list[tuple[list[str], str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            rows.append((re.findall(r"`([^`]+)`", cells[0]), cells[1]))
    return rows


def _tracked_top_level() -> set[str]:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {f.split("/")[0] for f in files if not f.startswith(".")}


def test_every_top_level_entry_is_in_the_layout() -> None:
    listed = {path.rstrip("/") for paths, _ in _layout_rows() for path in paths}
    missing = _tracked_top_level() - listed - {"README.md"}
    assert missing == set(), f"README Layout does not list {sorted(missing)}"


def test_every_path_the_layout_names_exists() -> None:
    absent = []
    for paths, description in _layout_rows():
        for path in paths:
            if not (ROOT / path).exists():
                absent.append(path)
        # Files named in the description live in the row's directory (or are repo paths).
        base = ROOT / paths[0] if paths[0].endswith("/") else ROOT
        for name in re.findall(r"`([\w./-]+\.py|[\w/-]+/)`", description):
            if not ((base / name).exists() or (ROOT / name).exists()):
                absent.append(f"{name} (in the row of {paths[0]})")
    assert absent == [], f"README Layout names paths that do not exist: {absent}"
