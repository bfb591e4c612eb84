"""A run's entry at its second: the overlap decision. A scheduled run created ahead holds
nothing; when its second comes, one transaction claims it and takes one of its job's
active slots, only if one is free. If none is, the job's overlap policy decides, then:
skipped, buffered, or the active runs cancelled; a catch-up run waits its turn."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from chalicelib.domain.jobs import Job, JobDefinition
from chalicelib.domain.outcomes import StartOutcome
from chalicelib.domain.policies import LATE_AFTER_S
from chalicelib.domain.runs import Delivery, MissReason, Run, RunTransition, Trigger
from chalicelib.domain.schedules import Schedule
from chalicelib.domain.slices import Slice, slice_id_for
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus
from chalicelib.ops.registry import runs_inline
from chalicelib.services.lifecycle import RunLifecycle
from chalicelib.services.scheduling import next_slot
from chalicelib.services.slots import free_ended_slots

ENTRY_ATTEMPTS = 3
SPACING_MARGIN_S = 1.5


def spaced_out(run: Run, early: float) -> bool:
    """No other slot of the run's job falls in the `early` seconds before its second (its
    slots are further apart, with a margin; a one-off has one): no other run of the job
    can want the slot between this run's claim and its second."""
    schedule = run.config.get("schedule")
    if not schedule or schedule.get("at"):
        return True
    if schedule.get("cron"):
        return early + SPACING_MARGIN_S <= 60  # a cron's slots are a minute apart at least
    gap = Schedule.model_validate(schedule).period_seconds  # on the start path: not the job
    return gap is None or gap >= early + SPACING_MARGIN_S


def may_enter_ahead(run: Run, now: float, early: float) -> bool:
    """Whether the run may take its job's slot now, `early` seconds at most before its
    second: not due yet, not a catch-up run, and spaced out."""
    ahead = now < run.start_at and not run.catchup
    return ahead and spaced_out(run, early)


def _late(run: Run, now: float, delivery: Delivery) -> bool:
    """A scheduled run (not already a catch-up one) starting more than LATE_AFTER_S after
    it could (`Delivery.since`): its start message was lost, its slot missed."""
    late = delivery.since(run, now) > LATE_AFTER_S
    return run.trigger == Trigger.schedule and not run.catchup and late


@dataclass(frozen=True)
class PreparedStart:
    """A run made ready ahead of its second: claimed already, or (`enter`: its job's limit
    of active runs) to be claimed at its second together with one of its job's slots."""

    run: Run
    token: str
    requests: list[dict[str, Any]]
    enter: int | None = None
    pinned: dict[str, Any] | None = field(default=None)  # its config with assets pinned
    delivery: Delivery = field(default_factory=Delivery)
    hinted: bool = False  # known from its start hint alone (unread): claimed as it says


class SlotEntry(RunLifecycle):
    """Claims a prepared run at its second with one of its job's active slots, or applies
    the job's overlap policy when none is free."""

    def enter(self, p: PreparedStart, attempt: int = 1) -> PreparedStart | StartOutcome:
        """At the run's second: claim it (a one-slice run as running, a sliced one as
        initializing, its slices then written) and take a slot, in one transaction."""
        limit = p.enter
        assert limit is not None
        now = self.clock.now()
        if attempt == 1 and _late(p.run, now, p.delivery):
            kept = self._late_slot(p, now)
            if not isinstance(kept, PreparedStart):
                return kept
            p = kept
        claimed = self._claim_with_slot(p, now, limit)
        if claimed is None:
            return self._refused(p, now, attempt)
        return claimed

    def enter_ahead(self, p: PreparedStart, early: float) -> PreparedStart | None:
        """Before the run's second: claim it with its job's slot now, if the job has room
        and no other slot of the job can come in the `early` seconds before this one's second
        (`spaced_out`): then
        nothing can want the slot meanwhile but a stale run, which must not win it anyway.
        None when it cannot: it is entered at its second."""
        assert p.enter is not None
        now = self.clock.now()
        if not may_enter_ahead(p.run, now, early):
            return None  # due already (it may be late: `enter` judges that), or not spaced
        return self._claim_with_slot(p, now, p.enter)

    @staticmethod
    def slot_claim(p: PreparedStart, now: float, limit: int) -> RunTransition:
        """The claim of a prepared run together with one of its job's slots, unwritten."""
        run = p.run
        begin = max(now, run.start_at)
        if run.presliced or not runs_inline(run.operations, len(p.requests)):
            lease = begin + run.lease_seconds
            transition = run.claim_initializing(p.token, lease, now, p.pinned)
        else:
            transition = run.claim_inline(
                p.token, begin, now, config=p.pinned, unread=p.hinted, same_config=p.hinted
            )
        if run.catchup:  # kept by a late entry: an on-time run waits for it, not skipped
            transition = replace(transition, sets={**transition.sets, "catchup": True})
        return transition.taking_slot(limit)

    def _claim_with_slot(self, p: PreparedStart, now: float, limit: int) -> PreparedStart | None:
        run = p.run
        claimed = self.apply(run, self.slot_claim(p, now, limit))
        if claimed is None:
            return None
        if claimed.status == ExStatus.initializing and not claimed.presliced:
            self.put_slices(claimed, p.requests, now)
        return PreparedStart(claimed, p.token, p.requests)

    def _late_slot(self, p: PreparedStart, now: float) -> PreparedStart | StartOutcome:
        """A scheduled run whose second passed unseen (its start message lost with the
        stack, its workers down): a missed slot, which follows the catch-up policy as the
        tick's would. Past the grace, or not kept (`none`; `latest` with a later slot due):
        missed. Kept by `all`: a catch-up run, which waits its turn."""
        run = p.run
        job = self.store.get_job(run.job_id)
        if job is None:
            return StartOutcome.dropped
        spec = JobDefinition.model_validate(run.config)
        after = None
        if spec.schedule is not None:
            after = next_slot(spec.schedule, run.scheduled_start, job.schedule_anchor)
        # a later slot due, or already holding the job's slot (claimed ahead): it is the latest
        later_due = (after is not None and after <= now) or any(
            s > run.slot for s in job.active_slots
        )
        within = now - run.start_at <= spec.misfire_grace_seconds
        if within and (spec.catchup == "all" or (spec.catchup == "latest" and not later_due)):
            return replace(p, run=replace(run, catchup=True))
        missed = self.apply(run, run.miss(now, MissReason.misfire))
        return StartOutcome.missed if missed is not None else StartOutcome.busy

    def put_slices(self, run: Run, requests: list[dict[str, Any]], now: float) -> None:
        """Write a sliced run's slices, in order."""
        self.store.put_slices(
            [
                Slice(run.ex_id, slice_id_for(i), i, request, created=now, updated=now)
                for i, request in enumerate(requests)
            ]
        )

    def _refused(self, p: PreparedStart, now: float, attempt: int) -> PreparedStart | StartOutcome:
        """The entry did not apply: the run is no longer pending (another claim, a stop),
        or its job was at its limit. A slot freed meanwhile (or held by a run that ended)
        is tried again."""
        assert p.enter is not None
        run = self.store.get_run(p.run.job_id, p.run.slot)
        if run is None or run.status in TERMINAL_EX:
            return StartOutcome.dropped
        if run.status != ExStatus.pending or run.holds_slot or run.buffered:
            return StartOutcome.busy
        run = replace(run, catchup=run.catchup or p.run.catchup)  # kept by a late entry
        job = self.store.get_job(run.job_id)
        if job is None:
            return StartOutcome.dropped
        if attempt < ENTRY_ATTEMPTS and (
            len(job.active_slots - {run.slot}) < p.enter or free_ended_slots(self.store, job)
        ):
            fresh = PreparedStart(run, p.token, p.requests, p.enter, p.pinned, p.delivery)
            return self.enter(fresh, attempt + 1)
        return self._overlap(run, job, now)

    def _overlap(self, run: Run, job: Job, now: float) -> StartOutcome:
        """The job is at its limit at this run's second. A catch-up run waits its turn; so
        does an on-time run whose job is busy only with catch-up runs (it goes first).
        Otherwise the policy: buffer_one waits, cancel_other stops the active runs and
        waits, skip (and allow at max_active_runs) records the slot skipped."""
        policy = str(run.config.get("overlap", "skip"))
        waits = run.catchup or policy in ("buffer_one", "cancel_other")
        if (waits or self._busy_with_catchup(job)) and self._wait(run, now):
            if policy == "cancel_other" and not run.catchup:
                self.stop_runs(job.job_id, job.active_slots, now, "cancelled by a newer slot")
            return StartOutcome.buffered
        if run.catchup:
            return StartOutcome.busy  # it could not join the waiting runs: a race; resent
        reason = MissReason.max_active_runs if policy == "allow" else MissReason.overlap
        skipped = self.apply(run, run.skip(now, reason))
        return StartOutcome.skipped if skipped is not None else StartOutcome.busy

    def _busy_with_catchup(self, job: Job) -> bool:
        """Every active run of the job is a catch-up run (an on-time slot never loses to a
        stale one)."""
        holders = [self.store.get_run(job.job_id, slot) for slot in job.active_slots]
        return bool(holders) and all(h is not None and h.catchup for h in holders)

    def _wait(self, run: Run, now: float) -> bool:
        """Make the run wait for a slot; if one came free meanwhile, nudge at once (the run
        that freed it may have looked before this one waited)."""
        if not self.store.wait_for_slot(run, now + run.recheck_after(now)):
            return False
        self.nudge_buffered(run.job_id)
        return True
