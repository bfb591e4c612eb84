"""Scheduling policies as pure functions: catch-up, why a slot was missed, jitter."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

from chalicelib.domain.runs import MissReason

Catchup = Literal["none", "latest", "all"]


def split_missed(
    missed: Sequence[float],
    catchup: Catchup,
    max_catchup: int,
    complete: bool,
    next_due: bool,
) -> tuple[list[float], list[float]]:
    """Which missed slots (in order) go to the ledger and which still run.

    `complete`: `missed` holds every missed slot (else more follow, and none runs yet).
    `next_due`: the slot after them is already due, on time: for `latest` it is the latest,
    so every missed one yields to it. `all` runs the last `max_catchup` missed slots."""
    if not complete:
        return list(missed), []
    keep = {"none": 0, "latest": 0 if next_due else 1, "all": max_catchup}[catchup]
    cut = max(0, len(missed) - keep)
    return list(missed[:cut]), list(missed[cut:])


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
