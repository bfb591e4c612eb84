"""What a tick writes for one due job: its slots up to the horizon, the missed ones to the
ledger or kept to catch up, the others as runs for their second, cut into the chunks that
each go with one advance of the job's schedule. The runs come first: the missed slots'
ledger records follow them (the job notes those still to write, `Job.unrecorded`), so a
tick after downtime does not hold the on-time slots back. Reads nothing; the firer writes
it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from chalicelib.domain.jobs import Job, JobDefinition, active_limit_of
from chalicelib.domain.notifications import events_due
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
    """A job's writes for this tick: its runs in slot order, each chunk advancing its
    schedule, then its missed slots' ledger records (`SlotWrite.ledger`)."""

    job: Job
    chunks: list[SlotWrite] = field(default_factory=list)

    @property
    def runs(self) -> list[SlotWrite]:
        """The chunks that advance the schedule (the first of them written first)."""
        return [c for c in self.chunks if not c.ledger]

    @property
    def ledger(self) -> list[SlotWrite]:
        """The chunks of missed slots' records, written after every job's runs."""
        return [c for c in self.chunks if c.ledger]


def write_items(write: SlotWrite) -> int:
    """DynamoDB items of a chunk: its records and its job's side."""
    return len(write.records) + 1


def write_bytes(write: SlotWrite) -> int:
    """About the size of a chunk: each record carries the job's definition."""
    return write_items(write) * (len(json.dumps(write.job.definition)) + RECORD_OVERHEAD)


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
    runs = [_run(job, spec, s, now, catchup=s in kept) for s in [*catchup, *on_time]]
    # catch-up runs go one after another; where they would contend with an on-time run for
    # the job's slots, all of them wait for it: the on-time slot runs on its second
    contended = bool(on_time) and active_limit_of(job.definition) is not None
    for later in [r for r in runs if r.catchup][0 if contended else 1 :]:
        later.buffered, later.check_at = True, now + spec.lease_seconds
    for record in runs if catchup and contended else []:
        record.ahead_of_catchup = not record.catchup
    unrecorded = sorted({*job.unrecorded, *((s, str(_miss_reason(job, s, sup))) for s in missed)})
    ledger = [_ledger_run(job, s, MissReason(reason), now) for s, reason in unrecorded]
    if not runs:  # the first ledger records advance the schedule themselves
        runs, ledger = ledger[:CREATE_CHUNK], ledger[CREATE_CHUNK:]
        unrecorded = unrecorded[CREATE_CHUNK:]
    for i in range(0, len(runs), CREATE_CHUNK):
        chunk, rest = runs[i : i + CREATE_CHUNK], runs[i + CREATE_CHUNK :]
        nxt = rest[0].scheduled_start if rest else after
        noted = unrecorded if i == 0 else None
        plan.chunks.append(SlotWrite(chunk, job, nxt, nxt is None and complete, noted))
    for i in range(0, len(ledger), CREATE_CHUNK):
        left = unrecorded[i + CREATE_CHUNK :]
        plan.chunks.append(SlotWrite(ledger[i : i + CREATE_CHUNK], job, after, False, left, True))
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
    """A missed slot's ledger record; its `missed` event marked due on it if the job asks
    (recorded once it is written, or by the next tick's sweep)."""
    key = scheduled_slot(slot)
    due = events_due(job.definition.get("notify"), {"missed": {}})
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
        notify_due=due or None,
        check_at=now if due else None,
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
    return stamp(run, now)


def stamp(run: Run, now: float) -> Run:
    """A new run as written at `now` (a long tick writes its last runs seconds after it
    planned them): created then, and re-sent by the sweep if it has not begun
    RESEND_AFTER_S after its second or its creation, whichever is later."""
    run.created = run.updated = now
    if run.status == ExStatus.pending and not run.buffered:
        run.check_at = max(run.start_at, now) + RESEND_AFTER_S
    return run
