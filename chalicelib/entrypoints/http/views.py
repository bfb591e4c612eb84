"""Response shapes: Teraslice's job and execution documents (seed 001)."""

from __future__ import annotations

import json
from typing import Any

from chalicelib.domain.cluster import in_flight
from chalicelib.domain.jobs import Job
from chalicelib.domain.logs import LogEntry
from chalicelib.domain.runs import Run
from chalicelib.domain.slices import Slice
from chalicelib.domain.timefmt import iso
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus


def job_view(job: Job) -> dict[str, Any]:
    out = dict(job.definition)
    out.update(
        {
            "job_id": job.job_id,
            "_created": iso(job.created),
            "_updated": iso(job.updated),
            "_context": "job",
            "active": job.active,
            "schedule_state": str(job.state),
            "next_fire_at": iso(job.next_fire_at),
        }
    )
    if job.deleted:
        out.update({"_deleted": True, "_deleted_on": iso(job.deleted_on)})
    return out


def slicer_stats(run: Run) -> dict[str, Any]:
    queued = in_flight(
        queued_cursor=run.queued_cursor,
        processed=run.processed,
        failed=run.failed,
        ended=run.status in TERMINAL_EX,
    )
    duration = None
    if run.started_at is not None:
        end = run.finished_at if run.finished_at is not None else run.updated
        duration = max(0, round(end - run.started_at))
    queuing_done = run.slices_total > 0 and run.queued_cursor >= run.slices_total
    return {
        "workers_active": min(run.workers, queued),
        "workers_joined": run.workers if run.started_at is not None else 0,
        "workers_available": max(0, run.workers - queued),
        "workers_reconnected": 0,
        "workers_disconnected": run.workers_lost,
        "queued": queued,
        "processed": run.processed,
        "failed": run.failed,
        "slices_total": run.slices_total,
        "job_duration": duration,
        "started": iso(run.started_at),
        "queuing_complete": iso(run.updated) if queuing_done else None,
        "subslices": 0,
        "subslice_by_key": 0,
        "slice_range_expansion": 0,
        "slicers": 1,
    }


def ex_view(run: Run) -> dict[str, Any]:
    out = dict(run.config)
    out.update(
        {
            "job_id": run.job_id,
            "ex_id": run.ex_id,
            "_created": iso(run.created),
            "_updated": iso(run.updated),
            "_context": "ex",
            "_status": str(run.status),
            "_has_errors": run.has_errors,
            "_slicer_stats": slicer_stats(run),
            "workers": run.workers,
            "slot": run.slot,
            "scheduled_start": iso(run.scheduled_start),
            "trigger": str(run.trigger),
            "args": run.args,
            "started_at": iso(run.started_at),
            "finished_at": iso(run.finished_at),
        }
    )
    if run.inline:
        out["attempts"] = run.attempts
    if run.status == ExStatus.completed and run.inline:
        out["result"] = run.result
    if run.errors:
        out["_failureReason"] = run.errors[-1].get("error")
    if run.reason:
        out["reason"] = run.reason
    if run.recovered_from:
        out["recovered_from"] = run.recovered_from
    if run.deleted:
        out["_deleted"] = True
    return out


def controller_view(run: Run) -> dict[str, Any]:
    """Teraslice's execution-controller stats (cluster/controllers, jobs/{id}/controller)."""
    stats = slicer_stats(run)
    return {
        "ex_id": run.ex_id,
        "job_id": run.job_id,
        "name": run.config.get("name"),
        "_status": str(run.status),
        **{
            k: stats[k]
            for k in (
                "workers_available",
                "workers_active",
                "workers_joined",
                "workers_reconnected",
                "workers_disconnected",
                "failed",
                "subslices",
                "queued",
                "slice_range_expansion",
                "processed",
                "slicers",
                "subslice_by_key",
                "started",
            )
        },
    }


def slice_view(sl: Slice, job_id: str | None = None) -> dict[str, Any]:
    """A slice as Teraslice's state records show it (errors listings use the same)."""
    return {
        "slice_id": sl.slice_id,
        "slicer_id": 0,
        "slicer_order": sl.order,
        "request": json.dumps(sl.request, separators=(",", ":")),
        "state": str(sl.state),
        "ex_id": sl.ex_id,
        "job_id": job_id,
        "attempts": sl.attempts,
        "_created": iso(sl.created),
        "_updated": iso(sl.updated),
        "error": sl.error,
    }


def log_entry_view(e: LogEntry) -> dict[str, Any]:
    """A line of a run log: `slice_id`, `attempt` and `seq` identify it."""
    return {
        "ts": iso(e.ts),
        "slice_id": e.slice_id,
        "attempt": e.attempt,
        "seq": e.seq,
        "level": e.level.value,
        "source": e.source,
        "message": e.message,
    }
