"""Firing due jobs: each slot's run created once (under the overlap policy), missed slots
recorded in the ledger, and the runs' start messages sent to land on their second."""

from __future__ import annotations

import logging
import math
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from chalicelib.config import Settings
from chalicelib.domain.errors import StoreUnavailable
from chalicelib.domain.jobs import Job
from chalicelib.domain.policies import jitter, miss_reason, split_missed
from chalicelib.domain.runs import START_LEAD_S, MissReason, Run, Trigger, scheduled_slot
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import Clock, Queue, Store, SupervisorRecord
from chalicelib.services.scheduling import next_slot
from chalicelib.services.slots import free_ended_slots
from chalicelib.services.start import start_message
from chalicelib.services.supervisor.stats import TickStats
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


class Firer:
    """Fires a tick's due jobs: creates every run due by the horizon and sends its start."""

    def __init__(
        self, store: Store, queue: Queue, clock: Clock, settings: Settings, worker: WorkerService
    ) -> None:
        self.store, self.queue, self.clock, self.settings = store, queue, clock, settings
        self.worker = worker
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def fire_due(
        self, due: list[Job], now: float, horizon: float, sup: SupervisorRecord, stats: TickStats
    ) -> None:
        """Fire every due job (on the fire pool when there are several), counting in `stats`."""
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
