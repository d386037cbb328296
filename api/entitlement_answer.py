"""The entitlement check's answer, written by hand (the hot path skips the response model).

Without a usage limit: `{entitled, active_until}`. When every subscription granting the
feature limits it: also `limit`, `used` and `remaining` in the current period, taken from
the grant with the most remaining, and `entitled` is false once `used >= limit` on every
grant. A grant without a limit makes the feature unlimited."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from db.repositories.entitlements import Grant
from domain.usage import evaluate_limit, number_text


def _time(value: datetime | None) -> str:
    if value is None:
        return "null"
    return '"' + value.astimezone(UTC).isoformat().replace("+00:00", "Z") + '"'


def check_body(grants: Sequence[Grant]) -> str:
    times = [g.active_until for g in grants if g.active_until is not None]
    until = _time(max(times) if times else None)
    if not grants or any(g.limit is None for g in grants):
        entitled = "true" if grants else "false"
        return f'{{"entitled":{entitled},"active_until":{until}}}'
    statuses = [evaluate_limit(g.limit, g.used) for g in grants if g.limit is not None]
    best = max(statuses, key=lambda s: s.remaining)
    entitled = "false" if best.reached else "true"
    return (
        f'{{"entitled":{entitled},"active_until":{until},"limit":{best.limit},'
        f'"used":{number_text(best.used)},"remaining":{number_text(best.remaining)}}}'
    )
