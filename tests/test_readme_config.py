"""The README's Configuration table lists every setting with its real default."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def _configuration_rows() -> dict[str, str]:
    """`RECUR_X` → the default cell, from the table under "## Configuration"."""
    text = README.read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`RECUR_"):
            continue
        names = re.findall(r"`(RECUR_[A-Z0-9_]+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split(" / ")]
        if len(defaults) != len(names):
            defaults = [cells[1]] * len(names)
        rows.update(zip(names, defaults, strict=True))
    return rows


def _documents(default: Any, cell: str) -> bool:
    shown = cell.strip("`")
    if default is None:
        return cell.startswith("unset")
    if isinstance(default, bool):
        return shown == str(default).lower()
    if isinstance(default, int | float):
        try:
            return float(shown.replace(",", "")) == float(default)
        except ValueError:
            return False
    if isinstance(default, list):
        return bool(json.loads(shown) == default)
    return shown == str(default)


SETTINGS = sorted(Settings.model_fields.items())


@pytest.mark.parametrize(("name", "field"), SETTINGS, ids=[n for n, _ in SETTINGS])
def test_every_setting_is_documented_with_its_default(name: str, field: Any) -> None:
    rows = _configuration_rows()
    variable = f"RECUR_{name.upper()}"
    assert variable in rows, f"{variable} is missing from the README's Configuration table"
    assert _documents(field.default, rows[variable]), (
        f"{variable}: the README says {rows[variable]!r}, the default is {field.default!r}"
    )


def test_the_table_names_no_setting_that_does_not_exist() -> None:
    known = {f"RECUR_{name.upper()}" for name in Settings.model_fields}
    assert set(_configuration_rows()) - known == set()
