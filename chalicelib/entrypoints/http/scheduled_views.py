"""Response shapes of the /scheduled-jobs routes: OpenSpecimen's names, Cadenza's extras.

A run is OpenSpecimen's ScheduledJobRunDetail (`id`, `scheduledJob`, `startedAt`,
`finishedAt`, `status`, `rtArgs`, `runBy`, `message`) plus what Cadenza knows besides
(`executionStatus`, `slot`, `scheduledStart`, `createdAt`). A job is Teraslice's job
document (`job_view`) plus OpenSpecimen's and Lens' names for the same facts.
"""

from __future__ import annotations

from typing import Any

from chalicelib.domain.history import RunCounts, Window, group_of
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Run
from chalicelib.domain.timefmt import iso
from chalicelib.entrypoints.http.views import job_view
from chalicelib.services.history import JobStats, UserStats


def run_message(run: Run) -> str | None:
    """The last error of a run, or why a ledger slot did not run."""
    if run.errors:
        error = run.errors[-1].get("error")
        if error:
            return str(error)
    return run.reason


def run_detail(run: Run) -> dict[str, Any]:
    return {
        "id": run.ex_id,
        "scheduledJob": {"id": run.job_id, "name": run.config.get("name")},
        "startedAt": iso(run.started_at),
        "finishedAt": iso(run.finished_at),
        "status": str(group_of(run.status)),
        "rtArgs": run.args,
        "runBy": str(run.trigger),
        "message": run_message(run),
        "executionStatus": str(run.status),
        "slot": run.slot,
        "scheduledStart": iso(run.scheduled_start),
        "createdAt": iso(run.created),
    }


def scheduled_job(job: Job) -> dict[str, Any]:
    d = job.definition
    owner = d.get("owner", "anonymous")
    out = job_view(job)
    out.update(
        {
            "id": job.job_id,
            "name": job.name,
            "owner": owner,
            "createdBy": owner,
            "scheduleState": str(job.state),
            "schedule": d.get("schedule"),
            "nextFireAt": iso(job.next_fire_at),
            "overlap": d.get("overlap"),
            "createdAt": iso(job.created),
            "updatedAt": iso(job.updated),
        }
    )
    return out


def counts_view(counts: RunCounts) -> dict[str, Any]:
    return {
        "total": counts.total,
        "byStatus": {str(g): n for g, n in counts.by_group.items()},
        "byExecutionStatus": {str(s): n for s, n in sorted(counts.by_status.items())},
    }


def window_view(window: Window) -> dict[str, str | None]:
    return {"fromDate": iso(window.lo), "toDate": iso(window.hi)}


def job_stats_view(stats: JobStats) -> dict[str, Any]:
    job = stats.job
    return {
        "scheduledJob": {
            "id": job.job_id,
            "name": job.name,
            "owner": job.definition.get("owner", "anonymous"),
            "scheduleState": str(job.state),
        },
        **window_view(stats.window),
        "state": None if stats.state is None else str(stats.state),
        **counts_view(stats.counts),
    }


def user_stats_view(stats: UserStats) -> dict[str, Any]:
    totals = RunCounts()
    for s in stats.jobs:
        totals.add(s.counts)
    return {
        "user": stats.user,
        "state": None if stats.state is None else str(stats.state),
        **window_view(stats.window),
        "jobs": [job_stats_view(s) for s in stats.jobs],
        "totals": counts_view(totals),
        "next": stats.next,
    }
