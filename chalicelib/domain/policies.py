"""Scheduling policies as pure functions: catch-up, why a slot was missed, jitter."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

from chalicelib.domain.jobs import JobDefinition
from chalicelib.domain.runs import MissReason

Catchup = Literal["none", "latest", "all"]
LATE_AFTER_S = 5  # a slot a tick finds this far past its time was missed (a tick's slack)


def catch_up(
    late: Sequence[float],
    on_time: Sequence[float],
    now: float,
    spec: JobDefinition,
    complete: bool,
) -> tuple[list[float], list[float]]:
    """Which late slots (more than LATE_AFTER_S past, in order) go to the ledger as missed
    and which still run, late, one after another.

    A slot more than `misfire_grace_seconds` late never runs (as APScheduler's
    misfire_grace_time, Kubernetes' startingDeadlineSeconds). Of the others, `none` runs
    none, `latest` the latest (none if an on-time slot is already due: it is the latest),
    `all` the last `max_catchup`.
    `complete`: `late` holds every late slot (else more follow, and none runs yet)."""
    if not complete:
        return list(late), []
    within = [s for s in late if s >= now - spec.misfire_grace_seconds]
    next_due = bool(on_time) and on_time[0] <= now
    keep = {"none": 0, "latest": 0 if next_due else 1, "all": spec.max_catchup}[spec.catchup]
    run = within[max(0, len(within) - keep) :] if keep else []
    chosen = set(run)
    return [s for s in late if s not in chosen], run


def _within(slot: float, start: float | None, end: float | None) -> bool:
    return start is not None and start <= slot and (end is None or end < start or slot < end)


def miss_reason(
    slot: float,
    suspended_at: float | None,
    resumed_at: float | None,
    halted_at: float | None,
    restarted_at: float | None,
) -> MissReason:
    """Why a slot did not run: the job was suspended then, the supervisor was halted then,
    or it was simply not fired in time (a late tick, an unreachable store)."""
    if _within(slot, suspended_at, resumed_at):
        return MissReason.suspended
    if _within(slot, halted_at, restarted_at):
        return MissReason.halted
    return MissReason.misfire


def jitter(job_id: str, slot: float, spread: int) -> int:
    """A stable per-slot delay in [0, spread] seconds, so jittered starts are reproducible."""
    if spread <= 0:
        return 0
    digest = hashlib.sha256(f"{job_id}:{slot}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (spread + 1)
