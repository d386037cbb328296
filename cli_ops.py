"""The work behind `recur keys`, `recur subs reconcile` and `recur ops` that reaches
PostgreSQL or Temporal directly (runs without the API)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from api import key_admin
from api.auth import Role
from api.reconcile import Orphan
from config import get_settings
from db.engine import get_engine, transaction
from db.repositories import api_keys


async def create_key(role: str, name: str | None) -> tuple[str, str]:
    try:
        parsed = Role(role)
    except ValueError:
        raise ValueError(f"role must be one of {[r.value for r in Role]}") from None
    row, raw = key_admin.mint(parsed, name)
    engine = get_engine(get_settings().effective_database_url)
    async with transaction(engine) as session:
        api_keys.add(session, row)
    await engine.dispose()
    return row.id, raw


async def list_keys() -> list[list[str]]:
    engine = get_engine(get_settings().effective_database_url)
    async with transaction(engine) as session:
        rows = await key_admin.all_keys(session)
    await engine.dispose()
    return [
        [
            r.id,
            r.role,
            r.name or "",
            r.prefix + "…",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "",
        ]
        for r in rows
    ]


async def revoke_key(key_id: str) -> bool:
    engine = get_engine(get_settings().effective_database_url)
    async with transaction(engine) as session:
        row = await key_admin.revoke(session, key_id)
    await engine.dispose()
    return row is not None


async def reconcile_subscriptions(repair: bool) -> list[Orphan]:
    """Live subscriptions whose workflow has closed; with `repair`, recorded as canceled."""
    from api import reconcile
    from db.engine import session_factory
    from worker import connect_temporal

    settings = get_settings()
    client = await connect_temporal(settings)
    engine = get_engine(settings.effective_database_url)
    try:
        async with session_factory(engine)() as session:
            orphans = await reconcile.find(client, session)
        if repair:
            async with transaction(engine) as session:
                for orphan in orphans:
                    await reconcile.repair(session, orphan)
    finally:
        await engine.dispose()
    return orphans


# A workflow type is a Python class name here: anything else is refused before it reaches
# a visibility query.
_WORKFLOW_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The marker the SDK records for `workflow.patched` / `workflow.deprecate_patch`.
_PATCH_MARKER = "core_patch"


@dataclass(frozen=True)
class OpenRun:
    workflow_id: str
    run_id: str
    started_at: datetime
    # The patch markers in the run's history (only read when a patch was asked about).
    patches: tuple[str, ...] = ()


def valid_workflow_type(name: str) -> bool:
    return bool(_WORKFLOW_TYPE.match(name))


def open_runs_query(workflow_type: str, started_before: datetime | None) -> str:
    """The visibility query for the open runs of `workflow_type`, started before a time."""
    if not valid_workflow_type(workflow_type):
        raise ValueError(f"not a workflow type: {workflow_type!r}")
    query = f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Running'"
    if started_before is not None:
        if started_before.tzinfo is None:
            raise ValueError("started_before must be timezone-aware")
        query += f" AND StartTime < '{started_before.isoformat()}'"
    return query


def has_patch(markers: tuple[str, ...], patch: str) -> bool:
    """Whether a run that recorded `markers` took `patch`: its own marker, or the marker of
    a bundle of SubscriptionWorkflow's that holds it (`workflows/patches.py`)."""
    from workflows.patches import BUNDLES

    return patch in markers or any(name in markers for name, patches in BUNDLES if patch in patches)


async def open_runs(
    workflow_type: str, started_before: datetime | None, without_patch: str | None
) -> list[OpenRun]:
    """Open runs of `workflow_type` (oldest first), only those started before
    `started_before` and, with `without_patch`, only those whose history has not taken it."""
    from worker import connect_temporal

    client = await connect_temporal(get_settings())
    query = open_runs_query(workflow_type, started_before)
    found = [OpenRun(wf.id, wf.run_id, wf.start_time) async for wf in client.list_workflows(query)]
    found.sort(key=lambda run: (run.started_at, run.workflow_id))
    if without_patch is None:
        return found
    runs = []
    for run in found:
        handle = client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
        markers = _patch_markers(await handle.fetch_history())
        if not has_patch(markers, without_patch):
            runs.append(OpenRun(run.workflow_id, run.run_id, run.started_at, markers))
    return runs


def _patch_markers(history: WorkflowHistory) -> tuple[str, ...]:
    """The patch ids a run's history recorded, in order."""
    ids = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        marker = event.marker_recorded_event_attributes
        if marker.marker_name == _PATCH_MARKER:
            ids.append(str(json.loads(marker.details["patch-data"].payloads[0].data)["id"]))
    return tuple(ids)
