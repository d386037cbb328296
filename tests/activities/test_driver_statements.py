"""The hot-path statements that run on psycopg directly (`db.driver`)."""

from __future__ import annotations

import pytest
from psycopg._queries import MAX_CACHED_STATEMENT_LENGTH

from db.driver import compact
from db.repositories.charges import _OPEN, _SETTLE
from db.repositories.projection import _PROJECT


@pytest.mark.parametrize("sql", [_PROJECT, _OPEN, _SETTLE], ids=["project", "open", "settle"])
def test_each_statement_fits_psycopgs_parse_cache(sql: str) -> None:
    # Longer statements are parsed again at every execution.
    assert len(sql.encode()) <= MAX_CACHED_STATEMENT_LENGTH


def test_compact_joins_lines_and_refuses_comments() -> None:
    assert compact("SELECT a,\n       b\n  FROM t   WHERE x = 'a  b'") == (
        "SELECT a, b FROM t WHERE x = 'a b'"
    )
    with pytest.raises(ValueError, match="comment"):
        compact("SELECT 1 -- one\nFROM t")
