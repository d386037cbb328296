"""Where a renewal's time goes, read back from the histories of the runs that renewed.

For each sampled subscription: the last `advance_clock` update, from the workflow task
that delivered it to its completion (or to the continue-as-new that ended its run), split
into workflow-task queueing (scheduled -> started) and processing (started -> completed),
each activity's queueing and run time, and the local activities it ran
(`core_local_activity` markers); when the run continued as new, the successor run, from
its start to the completion of the re-sent `advance_clock` update.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

E = EventType


def _t(event: Any) -> float:
    return float(event.event_time.ToMicroseconds()) / 1e6


async def _runs(client: Client, workflow_id: str) -> list[list[Any]]:
    found = [wf async for wf in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    found.sort(key=lambda wf: wf.start_time)
    out = []
    for wf in found:
        history = await client.get_workflow_handle(workflow_id, run_id=wf.run_id).fetch_history()
        out.append(list(history.events))
    return out


def _local_activity(event: Any) -> str | None:
    """The activity type of a local activity marker. Counted, not timed: the marker's
    schedule and completion times came out inconsistent (completion before schedule)."""
    marker = event.marker_recorded_event_attributes
    if marker.marker_name != "core_local_activity":
        return None
    return str(json.loads(marker.details["data"].payloads[0].data)["activity_type"])


def _segment(events: list[Any]) -> dict[str, float]:
    """Times from the last advance's workflow task to its answer (or the continue-as-new)."""
    last_accept = max(
        (
            i
            for i, e in enumerate(events)
            if e.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        ),
        default=None,
    )
    if last_accept is None:
        return {}
    start = last_accept
    while start > 0 and events[start].event_type != E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
        start -= 1
    end = next(
        (
            i
            for i in range(last_accept, len(events))
            if events[i].event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED
        ),
        len(events) - 1,
    )
    seg = events[start : end + 1]
    out: dict[str, float] = defaultdict(float)
    scheduled: dict[int, Any] = {}
    names: dict[int, str] = {}
    for e in seg:
        kind = e.event_type
        if kind == E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            scheduled[e.event_id] = e
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            sched = scheduled.get(e.workflow_task_started_event_attributes.scheduled_event_id)
            if sched is not None:
                out["workflow task queued"] += _t(e) - _t(sched)
            scheduled[-e.event_id] = e
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            started = scheduled.get(-e.workflow_task_completed_event_attributes.started_event_id)
            if started is not None:
                out["workflow task processing"] += _t(e) - _t(started)
            out["workflow tasks"] += 1
        elif kind == E.EVENT_TYPE_MARKER_RECORDED:
            local = _local_activity(e)
            if local is not None:
                out[f"local activities: {local}"] += 1
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[e.event_id] = e
            names[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            sid = e.activity_task_started_event_attributes.scheduled_event_id
            out[f"{names.get(sid, '?')} queued"] += _t(e) - _t(scheduled[sid])
            scheduled[-e.event_id] = e
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = e.activity_task_completed_event_attributes
            started = scheduled.get(-attrs.started_event_id)
            if started is not None:
                out[f"{names.get(attrs.scheduled_event_id, '?')} running"] += _t(e) - _t(started)
    label = "advance task → " + (
        "continue-as-new"
        if seg[-1].event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        else "answered"
    )
    out[label] = _t(seg[-1]) - _t(seg[0])
    out["history events"] = float(len(seg))
    return dict(out)


def _successor(events: list[Any], previous_end: float) -> dict[str, float]:
    done = next(
        (e for e in events if e.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED),
        None,
    )
    if done is None or not events:
        return {}
    return {
        "continue-as-new → new run started": _t(events[0]) - previous_end,
        "new run started → re-sent advance answered": _t(done) - _t(events[0]),
    }


async def renewal_timeline(client: Client, workflow_ids: list[str]) -> list[str]:
    """Median seconds per stage over the sampled subscriptions, as report lines."""
    samples: dict[str, list[float]] = defaultdict(list)
    for workflow_id in workflow_ids:
        runs = await _runs(client, workflow_id)
        advanced = [
            i
            for i, r in enumerate(runs)
            if any(e.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED for e in r)
        ]
        if not advanced:
            continue
        i = advanced[-1]
        parts = _segment(runs[i])
        ended = runs[i][-1].event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        if ended and i + 1 < len(runs):
            parts.update(_successor(runs[i + 1], _t(runs[i][-1])))
        for k, v in parts.items():
            samples[k].append(v)
    if not samples:
        return ["(no renewal runs found)"]
    lines = [f"median over {len(workflow_ids)} sampled subscriptions:"]
    for k, values in samples.items():
        unit = "" if k in ("workflow tasks", "history events") or k.startswith("local") else " s"
        lines.append(f"{k} {statistics.median(values):.3f}{unit}")
    return lines
