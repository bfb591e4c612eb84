"""Firing due jobs: each slot's run created once, in batches, missed slots recorded in the
ledger or kept to catch up, and the runs' start messages sent to land on their second.
Overlap is not decided here: a run takes its job's active slot at its own second."""

from __future__ import annotations

import logging
import math
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from chalicelib.config import Settings
from chalicelib.domain.errors import StoreUnavailable
from chalicelib.domain.jobs import Job
from chalicelib.domain.policies import LATE_AFTER_S, catch_up, jitter, miss_reason
from chalicelib.domain.runs import (
    RESEND_AFTER_S,
    START_LEAD_S,
    MissReason,
    Run,
    Trigger,
    scheduled_slot,
)
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import Clock, Queue, Store, SupervisorRecord
from chalicelib.services.scheduling import next_slot
from chalicelib.services.start import start_message
from chalicelib.services.supervisor.stats import TickStats
from chalicelib.services.worker import WorkerService

log = logging.getLogger(__name__)
MAX_SLOTS_PER_JOB_PER_TICK = 100
CREATE_ATTEMPTS = 5
MAX_LEDGER_PER_TICK = 240
CREATE_CHUNK = 24  # records per transaction, with the job's advance: DynamoDB allows 100


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
        """Write the job's slots due by `horizon`, in slot order and in batches: missed
        ones to the ledger, those the catch-up policy keeps as catch-up runs, the others
        as runs for their second. Returns the runs to start."""
        spec = job.spec
        if spec.schedule is None or job.next_fire_at is None:
            return []
        late, on_time, after, complete = self._slots(job, job.next_fire_at, now, horizon)
        missed, catchup = catch_up(late, on_time, now, spec, complete)
        kept = set(catchup)
        records = [self._ledger_run(job, s, self._miss_reason(job, s, sup), now) for s in missed]
        records += [self._run(job, s, now, catchup=s in kept) for s in [*catchup, *on_time]]
        records.sort(key=lambda r: r.scheduled_start)
        starts: list[Run] = []
        for i in range(0, len(records), CREATE_CHUNK):
            chunk = records[i : i + CREATE_CHUNK]
            rest = records[i + CREATE_CHUNK :]
            nxt = rest[0].scheduled_start if rest else after
            if not self._create(job, chunk, nxt, expire=nxt is None and complete):
                stats.slot_conflicts += 1
                break
            self._advanced(job, nxt)
            for record in chunk:
                if record.status == ExStatus.missed:
                    stats.slots_missed += 1
                    continue
                stats.runs_created += 1
                stats.catchup_runs += record.catchup
                stats.created_at(self.clock.now() - record.scheduled_start)
                starts.append(record)
        return starts

    def _slots(
        self, job: Job, first: float, now: float, horizon: float
    ) -> tuple[list[float], list[float], float | None, bool]:
        """The job's slots from `first`: those more than LATE_AFTER_S past (at most
        MAX_LEDGER_PER_TICK), then, if that is all of them (`complete`), those due by the
        horizon (at most MAX_SLOTS_PER_JOB_PER_TICK); and the slot after them."""
        spec = job.spec
        assert spec.schedule is not None
        late: list[float] = []
        on_time: list[float] = []
        slot: float | None = first
        while slot is not None and slot < now - LATE_AFTER_S and len(late) < MAX_LEDGER_PER_TICK:
            late.append(slot)
            slot = next_slot(spec.schedule, slot, job.schedule_anchor)
        complete = slot is None or slot >= now - LATE_AFTER_S
        while (
            complete
            and slot is not None
            and slot <= horizon
            and len(on_time) < MAX_SLOTS_PER_JOB_PER_TICK
        ):
            on_time.append(slot)
            slot = next_slot(spec.schedule, slot, job.schedule_anchor)
        return late, on_time, slot, complete

    def _create(self, job: Job, chunk: list[Run], nxt: float | None, expire: bool) -> bool:
        """Write one batch with the job's advance; a batch whose answer was lost but that
        landed counts as written. False when another supervisor wrote these slots."""
        probe = next((r for r in chunk if r.status == ExStatus.pending), chunk[0])
        for _ in range(CREATE_ATTEMPTS):
            if self.store.create_slots(chunk, job, nxt, expire):
                return True
            fresh = self.store.get_job(job.job_id)
            existing = self.store.get_run(probe.job_id, probe.slot)
            if fresh is None or existing is not None:
                # written by us (the answer was lost) or by another supervisor
                return (
                    fresh is not None
                    and existing is not None
                    and existing.ex_id == probe.ex_id
                    and fresh.next_fire_at == nxt
                )
            if fresh.version != job.version or fresh.next_fire_at != job.next_fire_at:
                return False
            # both colliding transactions were cancelled: try again
        return False

    @staticmethod
    def _miss_reason(job: Job, slot: float, sup: SupervisorRecord) -> MissReason:
        return miss_reason(slot, job.suspended_at, job.resumed_at, sup.halted_at, sup.restarted_at)

    @staticmethod
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

    @staticmethod
    def _run(job: Job, slot: float, now: float, catchup: bool) -> Run:
        """A slot's run: it holds nothing until its second (the overlap is decided then);
        the sweep re-sends its start if it has not begun RESEND_AFTER_S after it."""
        spec = job.spec
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

    @staticmethod
    def _advanced(job: Job, nxt: float | None) -> None:
        job.version += 1
        job.next_fire_at = nxt
