"""What a tick writes for one due job: its slots up to the horizon, the missed ones to the
ledger or kept to catch up, the others as runs for their second, cut into the chunks that
each go with one advance of the job's schedule. Reads nothing; the firer writes it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from chalicelib.domain.jobs import Job, JobDefinition
from chalicelib.domain.policies import LATE_AFTER_S, catch_up, jitter, miss_reason
from chalicelib.domain.runs import RESEND_AFTER_S, MissReason, Run, Trigger, scheduled_slot
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import SlotWrite, SupervisorRecord
from chalicelib.services.scheduling import next_slot

MAX_SLOTS_PER_JOB_PER_TICK = 100
MAX_LEDGER_PER_TICK = 240
CREATE_CHUNK = 24  # records per chunk: with the job's advance, one transaction of 25 items
RECORD_OVERHEAD = 1_000  # a run record's bytes beside its copy of the job's definition


@dataclass
class JobPlan:
    """A job's writes for this tick, in slot order; each chunk advances its schedule."""

    job: Job
    chunks: list[SlotWrite] = field(default_factory=list)

    @property
    def items(self) -> int:
        """DynamoDB items of its first chunk: its records and the job's advance."""
        return len(self.chunks[0].records) + 1 if self.chunks else 0

    @property
    def bytes(self) -> int:
        """About the size of its first chunk: each record carries the job's definition."""
        definition = len(json.dumps(self.job.definition))
        return self.items * (definition + RECORD_OVERHEAD)


def plan_job(job: Job, now: float, horizon: float, sup: SupervisorRecord) -> JobPlan:
    """The job's slots due by `horizon`: missed ones to the ledger, those the catch-up
    policy keeps as catch-up runs, the others as runs for their second."""
    spec = job.spec
    plan = JobPlan(job)
    if spec.schedule is None or job.next_fire_at is None:
        return plan
    late, on_time, after, complete = _slots(job, spec, job.next_fire_at, now, horizon)
    missed, catchup = catch_up(late, on_time, now, spec, complete)
    kept = set(catchup)
    records = [_ledger_run(job, s, _miss_reason(job, s, sup), now) for s in missed]
    records += [_run(job, spec, s, now, catchup=s in kept) for s in [*catchup, *on_time]]
    for later in [r for r in records if r.catchup][1:]:  # they run one after another
        later.buffered, later.check_at = True, now + spec.lease_seconds
    for record in records if catchup else []:  # on-time runs do not take the slot ahead
        record.behind_catchup = not record.catchup and record.status == ExStatus.pending
    records.sort(key=lambda r: r.scheduled_start)
    for i in range(0, len(records), CREATE_CHUNK):
        chunk = records[i : i + CREATE_CHUNK]
        rest = records[i + CREATE_CHUNK :]
        nxt = rest[0].scheduled_start if rest else after
        plan.chunks.append(SlotWrite(chunk, job, nxt, expire=nxt is None and complete))
    return plan


def _slots(
    job: Job, spec: JobDefinition, first: float, now: float, horizon: float
) -> tuple[list[float], list[float], float | None, bool]:
    """The job's slots from `first`: those more than LATE_AFTER_S past (at most
    MAX_LEDGER_PER_TICK), then, if that is all of them (`complete`), those due by the
    horizon (at most MAX_SLOTS_PER_JOB_PER_TICK); and the slot after them."""
    schedule, anchor = spec.schedule, job.schedule_anchor
    assert schedule is not None
    late: list[float] = []
    on_time: list[float] = []
    slot: float | None = first
    while slot is not None and slot < now - LATE_AFTER_S and len(late) < MAX_LEDGER_PER_TICK:
        late.append(slot)
        slot = next_slot(schedule, slot, anchor)
    complete = slot is None or slot >= now - LATE_AFTER_S
    while (
        complete
        and slot is not None
        and slot <= horizon
        and len(on_time) < MAX_SLOTS_PER_JOB_PER_TICK
    ):
        on_time.append(slot)
        slot = next_slot(schedule, slot, anchor)
    return late, on_time, slot, complete


def _miss_reason(job: Job, slot: float, sup: SupervisorRecord) -> MissReason:
    return miss_reason(slot, job.suspended_at, job.resumed_at, sup.halted_at, sup.restarted_at)


def _ledger_run(job: Job, slot: float, reason: MissReason, now: float) -> Run:
    key = scheduled_slot(slot)
    return Run(
        job_id=job.job_id,
        slot=key,
        ex_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"cadenza:{job.job_id}:{key}")),
        scheduled_start=slot,
        config=job.definition,
        trigger=Trigger.schedule,
        status=ExStatus.missed,
        reason=str(reason),
        created=now,
        updated=now,
        finished_at=now,
    )


def _run(job: Job, spec: JobDefinition, slot: float, now: float, catchup: bool) -> Run:
    """A slot's run: it holds nothing until its second (the overlap is decided then); the
    sweep re-sends its start if it has not begun RESEND_AFTER_S after it."""
    run = Run(
        job_id=job.job_id,
        slot=scheduled_slot(slot),
        ex_id=str(uuid.uuid4()),
        scheduled_start=slot,
        config=job.definition,
        trigger=Trigger.schedule,
        created=now,
        updated=now,
        workers=spec.workers,
        start_after=slot + jitter(job.job_id, slot, spec.jitter_seconds),
        catchup=catchup,
    )
    run.check_at = max(run.start_at, now) + RESEND_AFTER_S
    return run
