"""Records for the contract suites: a job, its runs and slices at a fixed time."""

from __future__ import annotations

import uuid
from typing import Any

from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Guard, Run, RunTransition, scheduled_slot
from chalicelib.domain.slices import Slice, slice_id_for
from chalicelib.domain.transitions import ExStatus, JobState
from chalicelib.ports import Store

T = 1_800_000_000.0
DEF: dict[str, Any] = {
    "name": "c",
    "owner": "alice",
    "operations": [{"_op": "noop"}],
    "schedule": {"rate": "rate(1 minute)"},
    "lease_seconds": 30,
    "max_retries": 2,
}


def make_job(
    state: JobState = JobState.SCHEDULED,
    next_fire_at: float | None = T,
    created: float = T,
    **definition: Any,
) -> Job:
    return Job(
        job_id=str(uuid.uuid4()),
        definition={**DEF, **definition},
        state=state,
        next_fire_at=next_fire_at,
        created=created,
        updated=created,
    )


def make_run(job: Job, slot_ts: float = T, **fields: Any) -> Run:
    run = Run(
        job_id=job.job_id,
        slot=scheduled_slot(slot_ts),
        ex_id=str(uuid.uuid4()),
        scheduled_start=slot_ts,
        config=DEF,
        created=slot_ts,
        updated=slot_ts,
        check_at=slot_ts + 30,
    )
    for k, v in fields.items():
        setattr(run, k, v)
    return run


def make_slices(ex_id: str, n: int) -> list[Slice]:
    return [Slice(ex_id, slice_id_for(i), i, {"i": i}, created=T, updated=T) for i in range(n)]


def running(job: Job, slices: int = 0, **fields: Any) -> Run:
    """A started run with `slices` slices outstanding."""
    return make_run(job, status=ExStatus.running, slices_total=slices, remaining=slices, **fields)


def stored_job(store: Store, job_id: str) -> Job:
    job = store.get_job(job_id)
    assert job is not None
    return job


def stored_run(store: Store, job_id: str, slot: str) -> Run:
    run = store.get_run(job_id, slot)
    assert run is not None
    return run


def claimed_slice(store: Store, token: str = "a") -> tuple[Job, Run, Slice]:
    """A started one-slice run whose slice `token` has claimed (a lease to T + 30)."""
    job = make_job()
    run = running(job, slices=1)
    store.create_run(run)
    store.put_slices(make_slices(run.ex_id, 1))
    sl = store.claim_slice(run.ex_id, slice_id_for(0), token, T, T + 30)
    assert sl is not None
    return job, run, sl


def write(
    among: list[ExStatus],
    to: ExStatus | None = None,
    sets: dict[str, Any] | None = None,
    **guard: Any,
) -> RunTransition:
    """A raw transition, as the aggregate would make one: the store's verb under test."""
    return RunTransition(Guard(frozenset(among), **guard), to, sets or {})
