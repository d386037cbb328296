"""One RFC 3339 form for every time Recur sends out: UTC with a `Z`.

Event data is stored as the workflow wrote it (`datetime.isoformat()`, hence `+00:00`);
stored history is never rewritten, so the API and webhook bodies normalise on the way out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# A date-time as `isoformat()` writes it; only such strings are touched, never free text.
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?([+-]\d{2}:\d{2}|Z)")


def rfc3339(value: datetime) -> str:
    """`value` in UTC, written with `Z`."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def with_z_times(value: object) -> object:
    """`value` (JSON-like) with every date-time string rewritten in UTC with `Z`."""
    if isinstance(value, str):
        if _ISO_TIME.fullmatch(value) is None:
            return value
        try:
            return rfc3339(datetime.fromisoformat(value))
        except ValueError:
            return value
    if isinstance(value, dict):
        return {key: with_z_times(item) for key, item in value.items()}
    if isinstance(value, list):
        return [with_z_times(item) for item in value]
    return value
