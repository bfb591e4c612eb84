"""A job's active slots (its limit of active runs): freeing the slots of runs that ended."""

from __future__ import annotations

from chalicelib.domain.jobs import Job
from chalicelib.domain.transitions import TERMINAL_EX
from chalicelib.ports import Store


def free_ended_slots(store: Store, job: Job) -> bool:
    """Free active slots whose runs have ended (defence in depth: every terminal write frees
    its slot in the same transaction). True if any was freed."""
    stale = [
        slot
        for slot in job.active_slots
        if (run := store.get_run(job.job_id, slot)) is None or run.status in TERMINAL_EX
    ]
    store.release_slots(job.job_id, stale)
    return bool(stale)
