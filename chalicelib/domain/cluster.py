"""Cluster-wide figures (seed 001's cluster/stats): what an execution adds to them."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ClusterTotals:
    """Sums over executions. `job_duration` is in whole seconds; `workers_joined` counts the
    workers each started execution asked for; `workers_disconnected` counts slices given up
    because the worker holding them was lost (its lease kept expiring)."""

    runs: int = 0
    processed: int = 0
    failed: int = 0
    job_duration: int = 0
    workers_joined: int = 0
    workers_disconnected: int = 0

    def __add__(self, other: ClusterTotals) -> ClusterTotals:
        return ClusterTotals(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def run_totals(
    *,
    processed: int,
    failed: int,
    started_at: float | None,
    finished_at: float | None,
    workers: int,
    workers_lost: int,
) -> ClusterTotals:
    """One execution's share: the same figures its own `_slicer_stats` shows."""
    started = started_at is not None
    duration = 0
    if started_at is not None and finished_at is not None:
        duration = max(0, round(finished_at - started_at))
    return ClusterTotals(
        runs=1,
        processed=processed,
        failed=failed,
        job_duration=duration,
        workers_joined=workers if started else 0,
        workers_disconnected=workers_lost,
    )


def in_flight(*, queued_cursor: int, processed: int, failed: int, ended: bool) -> int:
    """Slices handed out (queued) and not yet finished: what Teraslice calls `queued`."""
    return 0 if ended else max(0, queued_cursor - processed - failed)
