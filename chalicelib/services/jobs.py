"""Job use cases: validate and store a definition, read it, start a run on demand."""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from chalicelib.config import Limits, Settings
from chalicelib.domain.assets import PinnedAssets
from chalicelib.domain.errors import Conflict, InvalidInput, NotFound
from chalicelib.domain.identity import SYSTEM, Principal, owner_of
from chalicelib.domain.jobs import Job, JobDefinition
from chalicelib.domain.limits import (
    JOBS,
    RUNS,
    check_depth,
    check_schedule_period,
    check_stored_size,
    too_many_workers,
)
from chalicelib.domain.notifications import check_notify
from chalicelib.domain.runs import Run, Trigger, manual_slot
from chalicelib.domain.secrets import check_operations, check_references
from chalicelib.domain.timefmt import from_epoch
from chalicelib.domain.transitions import (
    JOB_MACHINE,
    TERMINAL_EX,
    ExStatus,
    JobState,
    apply,
)
from chalicelib.ops.registry import acting_reader, agent_command, validate_operations
from chalicelib.ports import Clock, Queue, Sort, Store
from chalicelib.services.quotas import Quotas
from chalicelib.services.scheduling import next_slot
from chalicelib.services.slots import free_ended_slots
from chalicelib.services.start import start_message

log = logging.getLogger(__name__)
TRANSITION_ATTEMPTS = 5  # a state change re-read and retried while ticks write the job


def current_run(store: Store, job_id: str) -> Run:
    """A job's current execution: its newest run that ran, never a newer ledger record
    (a skipped or missed slot)."""
    run = store.latest_run_that_ran(job_id)
    if run is None:
        raise NotFound(f"job {job_id} has no execution", job_id=job_id)
    return run


def _deleted(job: Job) -> Conflict:
    return Conflict(
        f"job {job.job_id} is deleted", job_id=job.job_id, _deleted=True, current_state="deleted"
    )


AssetOps = Callable[[Sequence[str]], PinnedAssets]


def with_owner(payload: Any, owner: str) -> Any:
    """The submitted definition owned by `owner`. A body may repeat that owner (a job's
    document sent back with changes) but never name another: InvalidInput, so an attempt
    to hand a job to someone else fails loudly instead of being quietly dropped."""
    if not isinstance(payload, dict):
        return payload
    given = payload.get("owner")
    if given is not None and given != owner:
        reason = "is the principal that submitted the job and cannot be changed; leave it out"
        raise InvalidInput(f"owner: {reason}", [{"field": "owner", "reason": reason}])
    return {**payload, "owner": owner}


def with_notify_default(payload: Any, default: str | None) -> Any:
    """The definition with the stage's default `notify` (JSON) if it names none; checked
    as the job's own would be."""
    if default is None or not isinstance(payload, dict) or "notify" in payload:
        return payload
    return {**payload, "notify": json.loads(default)}


def parse_definition(
    payload: Any,
    asset_ops: AssetOps | None = None,
    limits: Limits | None = None,
    secrets_prefix: str | None = None,
) -> JobDefinition:
    """A validated job definition, or InvalidInput naming each wrong field and why.
    `asset_ops` pins the job's `assets` (the definition keeps the ids they name now) and
    gives the ops they provide; `limits`, the stage's limits on its depth, stored size,
    workers and ops' run time; `secrets_prefix`, where the secrets its processors name
    must be."""
    if not isinstance(payload, dict):
        raise InvalidInput(
            "body: a job must be a JSON object",
            [{"field": "body", "reason": "expected a JSON object"}],
        )
    if limits is not None:
        check_depth("body", payload, limits.max_json_depth)
    try:
        spec = JobDefinition.model_validate(payload)
    except ValidationError as err:
        errors = [
            {
                "field": ".".join(str(p) for p in e["loc"]) or "body",
                "reason": e["msg"].removeprefix("Value error, "),
            }
            for e in err.errors()
        ]
        raise InvalidInput(f"{errors[0]['field']}: {errors[0]['reason']}", errors) from err
    pinned = asset_ops(spec.assets) if asset_ops is not None and spec.assets else None
    if pinned is not None:
        spec = spec.model_copy(update={"assets": pinned.ids})
    if limits is not None:
        _within_limits(spec, limits)
    declared = None if pinned is None else pinned.roles
    max_op_seconds = None if limits is None else limits.max_op_seconds
    operations = [op.to_dict() for op in spec.operations]
    validate_operations(operations, declared, max_op_seconds)
    if secrets_prefix is not None:
        check_operations(operations, secrets_prefix, acting_reader(operations))
    return spec


def _within_limits(spec: JobDefinition, limits: Limits) -> None:
    if spec.workers > limits.max_workers:
        raise too_many_workers("workers", spec.workers, limits.max_workers)
    # the job's record holds it, and so does each of its runs: both must fit an item
    check_stored_size("body", spec.to_dict(), limits.max_job_bytes, "max_job_bytes")


class JobService:
    """Submitting jobs, reading them and their executions, and starting runs on demand."""

    def __init__(
        self,
        store: Store,
        queue: Queue,
        clock: Clock,
        settings: Settings,
        asset_ops: AssetOps | None = None,
    ) -> None:
        self.store, self.queue, self.clock, self.settings = store, queue, clock, settings
        self.asset_ops = asset_ops
        self.who = SYSTEM
        # refuses a command op naming an agent, or labels, that none of the owner's agents
        # has (the composition root sets it: `AgentService.check_command`)
        self.check_command: Callable[[str, Mapping[str, Any], str], None] | None = None

    def as_(self, who: Principal) -> JobService:
        """The same use cases on behalf of `who`: it owns what it submits, and another
        principal's job or run is NotFound unless it is an admin."""
        scoped = copy.copy(self)
        scoped.who = who
        return scoped

    def _parse(self, payload: Any, now: float) -> JobDefinition:
        """The definition, validated and within the stage's limits; nothing is written."""
        limits = self.settings.limits
        payload = with_notify_default(payload, self.settings.notify_default)
        spec = parse_definition(payload, self.asset_ops, limits, self.settings.secrets_prefix)
        if spec.notify is not None:
            check_notify(spec.notify, self.settings.notify_topics, self.settings.secrets_prefix)
        if spec.schedule is not None:
            check_schedule_period(spec.schedule, from_epoch(now), limits.min_schedule_seconds)
        operations = [op.to_dict() for op in spec.operations]
        command = agent_command(operations)
        if command is not None and self.check_command is not None:
            self.check_command(spec.owner, command, "operations[1]")
        return spec

    def submit(self, payload: Any, start: bool) -> tuple[Job, Run | None]:
        """Store a job owned by the caller (without one, the system: the body's owner).
        With `start`, a scheduled job is SCHEDULED from now on and an unscheduled one gets
        an execution at once: the job and that execution are written in one transaction,
        so a job that could not start is not stored either."""
        if self.who is not SYSTEM:
            payload = with_owner(payload, self.who.id)
        now = self.clock.now()
        spec = self._parse(payload, now)
        job = Job(job_id=str(uuid.uuid4()), definition=spec.to_dict(), created=now, updated=now)
        if start and spec.schedule is not None:
            first = next_slot(spec.schedule, now, now)
            if first is None:
                raise InvalidInput(
                    "schedule: has no slot in the future",
                    [{"field": "schedule", "reason": "no future slot"}],
                )
            job.state, job.next_fire_at, job.anchor = JobState.SCHEDULED, first, now
        run = None if not start or spec.schedule is not None else self._new_run(job, now)
        taken = self._take_quotas(spec.owner, job, run, now)
        try:
            if run is None:
                self.store.create_job(job)
                return job, None
            if spec.active_limit is not None:
                run.holds_slot, job.active_slots = True, {run.slot}
            self.store.create_job(job, run)
        except BaseException:
            self._give_back(spec.owner, taken)
            raise
        self._nudge(run)
        return job, run

    def _limited(self) -> bool:
        """Whether the owners' limits apply: to every caller, not to the engine itself."""
        return self.who is not SYSTEM

    def _take_quotas(
        self, owner: str, job: Job, run: Run | None, now: float
    ) -> list[tuple[str, str]]:
        """The owner's quotas for a new job (and its first run), all or none."""
        if not self._limited():
            return []
        quotas, limits = Quotas(self.store, now), self.settings.limits
        taken = [(JOBS, quotas.take(owner, JOBS, job.job_id, limits.max_jobs_per_owner))]
        if run is not None:
            try:
                limit = limits.max_active_runs_per_owner
                taken.append((RUNS, quotas.take_run(owner, run.job_id, run.slot, limit)))
            except BaseException:
                self._give_back(owner, taken)
                raise
        return taken

    def _give_back(self, owner: str, taken: list[tuple[str, str]]) -> None:
        quotas = Quotas(self.store, self.clock.now())
        for kind, member in taken:
            quotas.give_back(owner, kind, member)

    def document(self, job_id: str) -> Job:
        """The job, deleted or not (a deleted one shows `_deleted`); NotFound if none or if
        the caller does not see it."""
        job = self.store.get_job(job_id)
        if job is None or not self.who.sees(owner_of(job.definition)):
            raise NotFound(f"job {job_id} not found", job_id=job_id)
        return job

    def get(self, job_id: str) -> Job:
        """A job that may still change: Conflict if it is deleted."""
        job = self.document(job_id)
        if job.deleted:
            raise _deleted(job)
        return job

    def listing(
        self, deleted: bool, active: bool | None, sort: Sort, start: int, size: int
    ) -> list[Job]:
        """Teraslice's GET /v1/jobs: a window of the deleted or live jobs in `sort` order,
        optionally only the active (true or no flag) or inactive ones; only the caller's
        unless it is an admin."""
        return self.store.job_window(deleted, active, sort, start, size, owner=self.who.scope)

    def update(self, job_id: str, payload: Any) -> Job:
        """Replace a job's definition, validated exactly like a submission. A changed
        schedule of a SCHEDULED or SUSPENDED job recomputes its next slot from now (no
        slot left: EXPIRED). Conditioned on the job's version: a racing change is a 409. The
        owner stays the job's (see `with_owner`)."""
        now = self.clock.now()
        job = self.get(job_id)
        spec = self._parse(with_owner(payload, owner_of(job.definition)), now)
        definition = spec.to_dict()
        schedule: tuple[JobState, float | None, float | None] | None = None
        moved = definition.get("schedule") != job.definition.get("schedule")
        if moved and job.state in (JobState.SCHEDULED, JobState.SUSPENDED):
            if spec.schedule is None:
                raise InvalidInput(
                    f"schedule: a {job.state} job keeps a schedule (expire it first)",
                    [{"field": "schedule", "reason": f"required while the job is {job.state}"}],
                )
            nxt = next_slot(spec.schedule, now, now)
            schedule = (job.state, nxt, now) if nxt is not None else (JobState.EXPIRED, None, None)
        if not self.store.update_job(job, definition, schedule, now):
            raise self._lost_race(job_id)
        return self.document(job_id)

    def set_active(self, job_id: str, active: bool) -> Job:
        """Teraslice's `_active` / `_inactive`: a listing flag (GET /v1/jobs?active=...).
        An inactive job cannot be started on demand; its schedule keeps firing (suspend
        it to stop that)."""
        job = self.get(job_id)
        if job.active != active and not self.store.set_job_active(job, active, self.clock.now()):
            raise self._lost_race(job_id)
        return self.document(job_id)

    def delete(self, job_id: str) -> Job:
        """Mark a job deleted: only when its current execution is terminal (or it has none)
        and it holds no active run. It leaves the due index (no more scheduled runs) and
        the listings of live jobs; its executions move to the deleted listing. Deleting a
        deleted job finishes marking its executions and returns it."""
        job = self.document(job_id)
        if not job.deleted:
            try:
                run: Run | None = current_run(self.store, job_id)
            except NotFound:
                run = None
            if run is not None and run.status not in TERMINAL_EX:
                raise Conflict(
                    f"job {job_id} has execution {run.ex_id} {run.status}: stop it first",
                    job_id=job_id,
                    ex_id=run.ex_id,
                    current_state=str(run.status),
                )
            if job.active_slots and free_ended_slots(self.store, job):
                job = self.document(job_id)
            if not self.store.delete_job(job, self.clock.now()):
                current = self.document(job_id)
                raise Conflict(
                    f"job {job_id} has active runs or changed meanwhile; try again",
                    job_id=job_id,
                    active_slots=sorted(current.active_slots),
                )
        self.store.mark_runs_deleted(job_id)
        Quotas(self.store, self.clock.now()).give_back_job(owner_of(job.definition), job_id)
        return self.document(job_id)

    def _lost_race(self, job_id: str) -> Conflict:
        current = self.document(job_id)
        if current.deleted:
            return _deleted(current)
        return Conflict(f"job {job_id} changed meanwhile; try again", job_id=job_id)

    def start_run(
        self, job_id: str, args: str | None = None, trigger: Trigger = Trigger.manual
    ) -> Run:
        """Create a run now (its own slot) and nudge a start worker. Secrets that `args`
        names must be under the stage's prefix."""
        if args is not None:
            check_references("args", args, self.settings.secrets_prefix)
        job = self.get(job_id)
        if not job.active:
            raise Conflict(f"job {job_id} is inactive", job_id=job_id)
        now = self.clock.now()
        spec = job.spec
        run = self._new_run(job, now, args, trigger)
        limit = spec.active_limit
        taken: list[tuple[str, str]] = []
        if self._limited():
            owner_limit = self.settings.limits.max_active_runs_per_owner
            member = Quotas(self.store, now).take_run(spec.owner, job_id, run.slot, owner_limit)
            taken.append((RUNS, member))
        if not self._create(run, limit):
            self._give_back(spec.owner, taken)
            fresh = self.get(job_id)
            raise Conflict(
                f"job {job_id} already has {len(fresh.active_slots)} active run(s) "
                f"(overlap {spec.overlap!r}, limit {limit})",
                job_id=job_id,
                active_slots=sorted(fresh.active_slots),
            )
        self._nudge(run)
        return run

    def _new_run(
        self, job: Job, now: float, args: str | None = None, trigger: Trigger = Trigger.manual
    ) -> Run:
        """A pending run of the job now, in its own slot (not written)."""
        spec = job.spec
        return Run(
            job_id=job.job_id,
            slot=manual_slot(now),
            ex_id=str(uuid.uuid4()),
            scheduled_start=now,
            config=job.definition,
            trigger=trigger,
            status=ExStatus.pending,
            args=args,
            created=now,
            updated=now,
            workers=spec.workers,
            check_at=now + spec.lease_seconds,
        )

    def _nudge(self, run: Run) -> None:
        """Send a new run's start message. The run is written: if the message is lost, the
        sweep re-sends it at the run's check_at, so a failure here is logged, not raised."""
        try:
            self.queue.send_starts([start_message(run, 0)])
        except Exception:  # any queue failure: the sweep covers it
            log.warning("start message of run %s not sent; the sweep re-sends it", run.ex_id)

    def _create(self, run: Run, limit: int | None) -> bool:
        """Create the run within the job's active-run limit; once the limit is met, free
        slots of runs that have ended (if any) and try once more."""
        if self.store.create_run(run, limit=limit):
            return True
        job = self.get(run.job_id)
        full = limit is not None and len(job.active_slots) >= limit
        if full and not free_ended_slots(self.store, job):
            return False
        return self.store.create_run(run, limit=limit)

    # ---- schedule state (Lens) -------------------------------------------------------------
    def schedule(self, job_id: str) -> Job:
        """NEW or SUSPENDED -> SCHEDULED. From SUSPENDED the job keeps its next slot, so the
        misfire policy decides what happens to the slots it missed; a no-op if SCHEDULED."""

        def step(job: Job) -> Job | None:
            spec = job.spec
            if spec.schedule is None:
                raise Conflict(
                    f"job {job_id} has no schedule", job_id=job_id, current_state=str(job.state)
                )
            if job.state == JobState.SCHEDULED:
                return job
            apply(JOB_MACHINE, job.state, JobState.SCHEDULED)
            now = self.clock.now()
            extra: dict[str, float | None] = {}
            nxt: float | None
            anchor: float | None
            if job.state == JobState.SUSPENDED and job.next_fire_at is not None:
                nxt, anchor, extra = job.next_fire_at, None, {"resumed_at": now}
            else:
                nxt, anchor = next_slot(spec.schedule, now, now), now
            if nxt is None:
                return self._moved(job, JobState.EXPIRED, None)
            return self._moved(job, JobState.SCHEDULED, nxt, anchor, extra)

        return self._transition(job_id, step)

    def suspend(self, job_id: str) -> Job:
        """SCHEDULED -> SUSPENDED: off the due index, fires nothing; a no-op if SUSPENDED."""

        def step(job: Job) -> Job | None:
            if job.state == JobState.SUSPENDED:
                return job
            apply(JOB_MACHINE, job.state, JobState.SUSPENDED)
            suspended: dict[str, float | None] = {"suspended_at": self.clock.now()}
            return self._moved(job, JobState.SUSPENDED, job.next_fire_at, None, suspended)

        return self._transition(job_id, step)

    def expire(self, job_id: str) -> Job:
        """Any state -> EXPIRED (final); a no-op if EXPIRED."""

        def step(job: Job) -> Job | None:
            if job.state == JobState.EXPIRED:
                return job
            apply(JOB_MACHINE, job.state, JobState.EXPIRED)
            return self._moved(job, JobState.EXPIRED, None)

        return self._transition(job_id, step)

    def _transition(self, job_id: str, step: Callable[[Job], Job | None]) -> Job:
        """`step` on the job as stored, again on a fresh read while another writer (a tick
        advancing its schedule, a request) changed it meanwhile: a transition asked of a job
        whose schedule moves every second must not fail for it. `step` re-checks the
        transition each time and returns None when its conditional write lost a race."""
        for _ in range(TRANSITION_ATTEMPTS):
            done = step(self.get(job_id))
            if done is not None:
                return done
        current = self.get(job_id)
        raise Conflict(
            f"job {job_id} changed meanwhile (now {current.state}); try again",
            job_id=job_id,
            current_state=str(current.state),
        )

    def _moved(
        self,
        job: Job,
        state: JobState,
        nxt: float | None,
        anchor: float | None = None,
        extra: dict[str, float | None] | None = None,
    ) -> Job | None:
        if not self.store.set_job_state(job, state, nxt, anchor, extra, now=self.clock.now()):
            return None
        return self.get(job.job_id)

    def latest_run(self, job_id: str) -> Run:
        self.document(job_id)
        return current_run(self.store, job_id)

    def current_or_none(self, job: Job) -> Run | None:
        """The job's current execution, or None if it never ran."""
        try:
            return current_run(self.store, job.job_id)
        except NotFound:
            return None

    def get_run_by_ex(self, ex_id: str) -> Run:
        run = self.store.get_run_by_ex(ex_id)
        if run is None or not self.who.sees(owner_of(run.config)):
            raise NotFound(f"execution {ex_id} not found", ex_id=ex_id)
        return run
