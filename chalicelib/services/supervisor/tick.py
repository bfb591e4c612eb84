"""The supervisor: one `tick(now)` creates due runs (once per slot) and repairs stalled ones."""

from __future__ import annotations

import logging
import math
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from typing import Any

from chalicelib.config import Settings
from chalicelib.domain.errors import StoreUnavailable
from chalicelib.domain.jobs import Job
from chalicelib.domain.policies import jitter, miss_reason, split_missed
from chalicelib.domain.runs import START_LEAD_S, MissReason, Run, Trigger, scheduled_slot
from chalicelib.domain.transitions import ExStatus, SupervisorState
from chalicelib.ports import (
    Alert,
    Clock,
    Notifier,
    Queue,
    StartMessage,
    Store,
    SupervisorRecord,
    TickFailure,
)
from chalicelib.services.scheduling import next_slot
from chalicelib.services.slots import free_ended_slots
from chalicelib.services.start import start_message
from chalicelib.services.worker import WorkerService

log = logging.getLogger(__name__)
MAX_SLOTS_PER_JOB_PER_TICK = 100
CREATE_ATTEMPTS = 5
MAX_LEDGER_PER_TICK = 240
LEDGER_CHUNK = 24


def start_delay(slot: float, now: float) -> int:
    """Whole-second SQS delay that lands a start message START_LEAD_S seconds before its
    slot: delivery (a poll, a Lambda trigger) takes time, and the start worker claims the
    run ahead and waits out the rest to the sub-second."""
    return max(0, math.floor(slot - now) - START_LEAD_S)


class StartSender:
    """A tick's start messages, sent ten at a time as runs are created, each delay
    computed when it is sent: a long tick must not make the early runs late."""

    def __init__(self, queue: Queue, clock: Clock, now: float) -> None:
        self.queue, self.clock = queue, clock
        self._tick_now, self._clock_at_tick = now, clock.now()
        self._pending: list[Run] = []
        self._lock = threading.Lock()
        self.sent = 0
        self.errors = 0

    def now(self) -> float:
        """The tick's `now` moved on by the time the tick has taken so far."""
        return self._tick_now + (self.clock.now() - self._clock_at_tick)

    def add(self, run: Run) -> None:
        with self._lock:
            self._pending.append(run)
            if len(self._pending) < 10:
                return
            batch, self._pending = self._pending, []
        self._send(batch)

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            self._send(batch)

    def _send(self, batch: list[Run]) -> None:
        now = self.now()
        try:
            self.queue.send_starts([start_message(r, start_delay(r.start_at, now)) for r in batch])
        except Exception:  # the sweep re-sends starts of runs that did not begin
            with self._lock:
                self.errors += 1
            log.exception("sending %d start messages failed", len(batch))
            return
        with self._lock:
            self.sent += len(batch)


@dataclass
class TickStats:
    """What one tick did; counted, so comparable across machines."""

    halted: bool = False
    shards_queried: int = 0
    jobs_read: int = 0
    runs_created: int = 0
    runs_buffered: int = 0
    runs_cancelled: int = 0
    slot_conflicts: int = 0
    slots_skipped: int = 0
    slots_missed: int = 0
    starts_sent: int = 0
    stalled_read: int = 0
    resent: int = 0
    slices_failed: int = 0
    finalized: int = 0
    alerts: int = 0
    errors: int = 0
    # Seconds: the tick's wall time, and when its runs were created against their slots
    # (below zero: ahead of the slot, as look-ahead intends; above: late already).
    duration_s: float = 0.0
    created_from_slot_min_s: float | None = None
    created_from_slot_max_s: float | None = None

    def merge(self, other: TickStats) -> None:
        """Add another tick's counts and widen the creation range (the halted flag and
        the duration are not counts)."""
        for f in fields(self):
            if f.type == "int":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        for offset in (other.created_from_slot_min_s, other.created_from_slot_max_s):
            if offset is not None:
                self.created_at(offset)

    def created_at(self, from_slot: float) -> None:
        """Count a run's creation `from_slot` seconds after (or, below zero, before) its slot."""
        from_slot = round(from_slot, 3)
        low, high = self.created_from_slot_min_s, self.created_from_slot_max_s
        self.created_from_slot_min_s = from_slot if low is None else min(low, from_slot)
        self.created_from_slot_max_s = from_slot if high is None else max(high, from_slot)


class SupervisorService:
    """What the scheduled supervisor function does on each EventBridge tick."""

    def __init__(
        self,
        store: Store,
        queue: Queue,
        clock: Clock,
        settings: Settings,
        worker: WorkerService,
        notifier: Notifier | None = None,
    ) -> None:
        self.store, self.queue, self.clock, self.settings = store, queue, clock, settings
        self.worker = worker
        self.notifier = notifier
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._unnoted: TickFailure | None = None

    def state(self) -> SupervisorRecord:
        """The supervisor's record, created (running, or halted if so configured) if none."""
        found = self.store.get_supervisor()
        if found is not None:
            return found
        initial = SupervisorState.HALTED if self.settings.start_halted else SupervisorState.RUNNING
        reason = "started halted by configuration" if self.settings.start_halted else None
        return self.store.init_supervisor(
            SupervisorRecord(state=initial, reason=reason, updated=self.clock.now())
        )

    def tick(self, now: float | None = None) -> TickStats:
        """Create every run due by now + look-ahead, send its start to arrive on its second,
        then sweep runs whose lease or progress check has expired. A tick the store fails
        raises StoreUnavailable and is noted on the supervisor record: at once if the record
        can be written, else by the next tick of this warm container."""
        began = self.clock.now()
        now = began if now is None else now
        try:
            return self._tick(now, began)
        except StoreUnavailable as err:
            self._note_failure(now, err)
            raise

    def _note_failure(self, now: float, err: StoreUnavailable) -> None:
        earlier = self._unnoted.count if self._unnoted is not None else 0
        self._unnoted = TickFailure(count=earlier + 1, at=now, reason=str(err))
        try:
            self.store.record_tick_failure(self._unnoted)
        except StoreUnavailable:
            log.warning("tick at %s failed and could not be noted: %s", now, err)
            return
        self._unnoted = None

    def _tick(self, now: float, began: float) -> TickStats:
        stats = TickStats()
        sup = self.state()
        if sup.state == SupervisorState.HALTED:
            stats.halted = True
            self._record(now, stats, began)
            return stats
        horizon = now + self.settings.lookahead_seconds
        due: list[Job] = []
        for shard in range(self.settings.due_shards):
            jobs = self.store.due_jobs(shard, horizon)
            stats.shards_queried += 1
            stats.jobs_read += len(jobs)
            due += jobs
        sender = StartSender(self.queue, self.clock, now)
        if len(due) <= 1 or self.settings.fire_concurrency <= 1:
            results = [self._fire_safely(job, now, horizon, sup, sender) for job in due]
        else:
            pool = self._fire_pool()
            results = list(pool.map(lambda j: self._fire_safely(j, now, horizon, sup, sender), due))
        for job_stats in results:
            stats.merge(job_stats)
        sender.flush()
        stats.starts_sent += sender.sent
        stats.errors += sender.errors
        self._sweep(now, stats)
        self._record(now, stats, began)
        return stats

    def _record(self, now: float, stats: TickStats, began: float) -> None:
        stats.duration_s = round(self.clock.now() - began, 3)
        created = stats.runs_created > 0
        self.store.record_tick(now, asdict(stats), self._unnoted, created=created)
        self._unnoted = None

    def _fire_pool(self) -> ThreadPoolExecutor:
        """One pool for the supervisor's life: its threads keep their store clients."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.settings.fire_concurrency, thread_name_prefix="fire"
                )
            return self._pool

    def _fire_safely(
        self,
        job: Job,
        now: float,
        horizon: float,
        sup: SupervisorRecord,
        sender: StartSender,
    ) -> TickStats:
        stats = TickStats()
        try:
            for run in self._fire(job, now, horizon, stats, sup):
                sender.add(run)
        except StoreUnavailable:
            raise
        except Exception:  # one bad job must not stop the tick for every other one
            stats.errors += 1
            log.exception("job %s not fired this tick", job.job_id)
        return stats

    def _fire(
        self, job: Job, now: float, horizon: float, stats: TickStats, sup: SupervisorRecord
    ) -> list[Run]:
        """Create the job's runs due by `horizon` (its missed slots first go to the
        ledger); returns those to start."""
        spec = job.spec
        schedule, slot = spec.schedule, job.next_fire_at
        if schedule is None or slot is None:
            return []
        anchor = job.schedule_anchor
        cutoff = now - spec.misfire_grace_seconds
        if slot < cutoff:
            slot = self._misfire(job, slot, cutoff, now, stats, sup)
            if slot is None:
                return []  # the ledger goes on next tick, or the job has ended
        starts: list[Run] = []
        for _ in range(MAX_SLOTS_PER_JOB_PER_TICK):
            if slot is None or slot > horizon:
                break
            nxt = next_slot(schedule, slot, anchor)
            created = self._fire_slot(job, slot, nxt, now, stats)
            if created is None:
                break
            if created.status == ExStatus.pending and not created.buffered:
                starts.append(created)
            slot = nxt
        return starts

    def _misfire(
        self,
        job: Job,
        first: float,
        cutoff: float,
        now: float,
        stats: TickStats,
        sup: SupervisorRecord,
    ) -> float | None:
        """Slots older than the grace: keep the latest (or the last `max_catchup`, or none)
        to run, and record every other one in the ledger as missed, with why. Returns the
        first slot left to run (job.next_fire_at then equals it), or None when the ledger
        goes on next tick or no slot is left."""
        spec = job.spec
        assert spec.schedule is not None
        missed: list[float] = []
        slot: float | None = first
        while slot is not None and slot < cutoff and len(missed) < MAX_LEDGER_PER_TICK:
            missed.append(slot)
            slot = next_slot(spec.schedule, slot, job.schedule_anchor)
        complete = slot is None or slot >= cutoff
        next_due = slot is not None and slot <= now
        to_ledger, to_run = split_missed(missed, spec.catchup, spec.max_catchup, complete, next_due)
        for i in range(0, len(to_ledger), LEDGER_CHUNK):
            chunk = to_ledger[i : i + LEDGER_CHUNK]
            rest = to_ledger[i + LEDGER_CHUNK :] + to_run
            after = rest[0] if rest else slot
            records = [
                self._ledger_run(job, s, ExStatus.missed, self._miss_reason(job, s, sup), now)
                for s in chunk
            ]
            if not self.store.record_missed(records, job, after, expire=after is None):
                stats.slot_conflicts += 1
                return None
            self._advanced(job, after)
            stats.slots_missed += len(chunk)
        if not complete:
            return None
        return to_run[0] if to_run else slot

    @staticmethod
    def _miss_reason(job: Job, slot: float, sup: SupervisorRecord) -> MissReason:
        return miss_reason(slot, job.suspended_at, job.resumed_at, sup.halted_at, sup.restarted_at)

    def _ledger_run(
        self, job: Job, slot: float, status: ExStatus, reason: MissReason, now: float
    ) -> Run:
        key = scheduled_slot(slot)
        return Run(
            job_id=job.job_id,
            slot=key,
            ex_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"cadenza:{job.job_id}:{key}")),
            scheduled_start=slot,
            config=job.definition,
            trigger=Trigger.schedule,
            status=status,
            reason=str(reason),
            created=now,
            updated=now,
            finished_at=now,
        )

    def _fire_slot(
        self, job: Job, slot: float, nxt: float | None, now: float, stats: TickStats
    ) -> Run | None:
        """Create this slot's run under the job's overlap policy (or its ledger record).
        Returns what was written, or None when another supervisor owns the slot."""
        spec = job.spec
        limit = spec.active_limit
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
        )
        run.check_at = max(run.start_at, now) + spec.lease_seconds
        for _ in range(CREATE_ATTEMPTS):
            if self.store.create_scheduled_run(run, job, nxt, nxt is None, limit=limit):
                self._advanced(job, nxt)
                stats.runs_created += 1
                stats.created_at(self.clock.now() - slot)
                return run
            fresh = self.store.get_job(job.job_id)
            existing = self.store.get_run(run.job_id, run.slot)
            if existing is not None and existing.ex_id == run.ex_id:
                # our write landed but its answer was lost (a timeout): the run is ours
                self._advanced(job, nxt)
                stats.runs_created += 1
                stats.created_at(self.clock.now() - slot)
                return existing
            if (
                fresh is None
                or fresh.version != job.version
                or fresh.next_fire_at != job.next_fire_at
                or existing is not None
            ):
                stats.slot_conflicts += 1
                return None
            job.active_slots, job.buffered_slot = fresh.active_slots, fresh.buffered_slot
            if limit is None or len(fresh.active_slots) < limit:
                continue  # both colliding transactions were cancelled: try again
            if free_ended_slots(self.store, fresh):
                continue
            return self._overlap(job, run, nxt, now, stats)
        stats.slot_conflicts += 1
        return None

    def _overlap(
        self, job: Job, run: Run, nxt: float | None, now: float, stats: TickStats
    ) -> Run | None:
        """The job is at its limit of active runs: buffer this slot, stop the active run
        and buffer it, or record it as skipped, as the job's overlap policy says."""
        spec = job.spec
        if spec.overlap in ("buffer_one", "cancel_other"):
            run.check_at = now + spec.lease_seconds
            if self.store.create_scheduled_run(run, job, nxt, nxt is None, buffer=True):
                self._advanced(job, nxt)
                stats.runs_buffered += 1
                if spec.overlap == "cancel_other":
                    stats.runs_cancelled += self.worker.stop_runs(
                        job.job_id, job.active_slots, now, "cancelled by a newer slot"
                    )
                return run
        reason = MissReason.overlap if spec.overlap != "allow" else MissReason.max_active_runs
        record = self._ledger_run(job, run.scheduled_start, ExStatus.skipped, reason, now)
        if not self.store.record_missed([record], job, nxt, expire=nxt is None):
            stats.slot_conflicts += 1
            return None
        self._advanced(job, nxt)
        stats.slots_skipped += 1
        return record

    @staticmethod
    def _advanced(job: Job, nxt: float | None) -> None:
        job.version += 1
        job.next_fire_at = nxt

    # ---- sweep ----------------------------------------------------------------------------
    def _sweep(self, now: float, stats: TickStats) -> None:
        for shard in range(self.settings.lease_shards):
            for run in self.store.stalled_runs(shard, now):
                stats.stalled_read += 1
                try:
                    self._repair(run, now, stats)
                except StoreUnavailable:
                    raise
                except Exception:
                    stats.errors += 1
                    log.exception("run %s not repaired this tick", run.ex_id)

    def _bump(self, run: Run, now: float) -> Run | None:
        """Claim this run's repair for this tick: only one supervisor wins the check_at."""
        return self.worker.apply(run, run.bump(now))

    def alert(self, reason: str, run: Run, now: float, **detail: Any) -> Alert:
        """Keep an alert and publish it (seed 000: a hanging job should generate an alert)."""
        alert = Alert(
            alert_id=uuid.uuid4().hex,
            created=now,
            reason=reason,
            job_id=run.job_id,
            ex_id=run.ex_id,
            slot=run.slot,
            detail={"status": str(run.status), **detail},
        )
        self.store.put_alert(alert)
        if self.notifier is not None:
            self.notifier.publish(alert)
        return alert

    def _timed_out(self, run: Run, now: float, stats: TickStats) -> bool:
        """No progress (no write) for longer than timeout_seconds: the run is failed."""
        idle = now - run.updated
        if run.status in (ExStatus.paused, ExStatus.stopping) or idle <= run.timeout_seconds:
            return False
        note = f"no progress for {idle:.0f} s (timeout_seconds {run.timeout_seconds})"
        failed = self.worker.apply(run, run.time_out(now, note))
        if failed is not None:
            stats.alerts += 1
            self.alert("timed out", run, now, idle_seconds=round(idle))
        return True

    def _repair(self, run: Run, now: float, stats: TickStats) -> None:
        """A run whose check is due: fail it if it timed out, else nudge what stalled."""
        if self._timed_out(run, now, stats):
            return
        if run.status in (ExStatus.pending, ExStatus.initializing):
            if self._bump(run, now):
                self.queue.send_starts([StartMessage(run.job_id, run.slot)])
                stats.resent += 1
            return
        if run.status == ExStatus.stopping:
            if not self.worker.stop_if_idle(run, now):
                self._bump(run, now)
            return
        if run.status != ExStatus.running:
            self._bump(run, now)
            return
        if run.inline:
            self._repair_inline(run, now, stats)
        else:
            self._repair_sliced(run, now, stats)

    def _repair_inline(self, run: Run, now: float, stats: TickStats) -> None:
        """A one-slice run: run it again if its worker was lost, or give up on it."""
        if run.lease_expires_at is not None and run.lease_expires_at >= now:
            self._bump(run, now)
            return
        if run.attempts > run.max_retries:
            error = f"lease expired {run.attempts} times (worker lost)"
            failed = self.worker.apply(run, run.give_up_inline(now, error))
            if failed:
                stats.slices_failed += 1
                stats.finalized += 1
                stats.alerts += 1
                self.alert("hanging: the worker was lost", run, now, attempts=run.attempts)
            return
        if self._bump(run, now):
            self.queue.send_starts([StartMessage(run.job_id, run.slot)])
            stats.resent += 1

    def _repair_sliced(self, run: Run, now: float, stats: TickStats) -> None:
        """A sliced run: put its work back in flight (one sweeper wins the check)."""
        if self._bump(run, now) is None:
            return
        done = self.worker.refill(run, now)
        stats.resent += done.resent
        stats.slices_failed += done.failed
        stats.finalized += done.finalized
        if done.failed:
            stats.alerts += 1
            self.alert("hanging: slices lost their worker", run, now, slices=done.failed)
