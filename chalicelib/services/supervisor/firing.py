"""Firing due jobs: each slot's run created once, in batches (several jobs per transaction
where they fit), missed slots recorded in the ledger or kept to catch up (`planning`), and
the runs' start messages sent to land on their second. Overlap is not decided here: a run
takes its job's active slot at its own second."""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping

from chalicelib.config import Settings
from chalicelib.domain.errors import StoreUnavailable
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import (
    CLAIM_CALLS,
    GROUP_RUNS,
    MAX_WAIT_S,
    START_LEAD_S,
    Run,
    burst_lead,
    start_delay,
)
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import (
    Clock,
    Queue,
    SlotWrite,
    StartGroup,
    StartMessage,
    Store,
    SupervisorRecord,
)
from chalicelib.services.notifications import NotificationService, settle_due
from chalicelib.services.start import start_message
from chalicelib.services.supervisor.planning import (
    JobPlan,
    plan_job,
    stamp,
    write_bytes,
    write_items,
)
from chalicelib.services.supervisor.side_by_side import SideBySide
from chalicelib.services.supervisor.stats import TickStats, seconds_since

log = logging.getLogger(__name__)
CREATE_ATTEMPTS = 5
MAX_TX_ITEMS = 100  # DynamoDB's limits of one transaction: items, and 4 MB
MAX_TX_BYTES = 3_000_000
GROUP_FROM = 20  # a second with this many starts is a burst: its starts go in groups
GROUP_BYTES = 60_000  # a group's body at most (SQS takes 256 KiB a message and a batch)
IMMINENT_S = 2.0  # a start due to be sent within this is sent with its write, not batched
TOGETHER_ATTEMPTS = 3  # a group's transaction, again without the jobs refused
LEDGER_SHARE = 0.5  # of the look-ahead: past it, a tick leaves missed slots to the next
MEASURE_FROM = 100  # runs a tick writes before its own write rate can lengthen a burst's lead


def _due_by_second(plans: list[JobPlan]) -> Counter[int]:
    return Counter(
        math.floor(r.start_at)
        for p in plans
        for w in p.chunks
        for r in w.records
        if r.status == ExStatus.pending and not r.buffered
    )


class StartSender:
    """A tick's start messages, sent ten at a time as runs are created, each delay
    computed when it is sent: a long tick must not make the early runs late. Each second's
    lead comes from how many runs this tick starts on it (`due`, `burst_lead`); a burst's
    (GROUP_FROM runs or more on one second) go in groups of runs due on the same second
    (`StartGroup`), and their lead is the longer of the configured claim rate's and the
    one this tick's own writes measure: a store slower than configured (DynamoDB
    throttling, an emulator on a busy machine) takes the burst's claims slower too. A
    second that is not a burst's sends lone messages, which are never handed off: their
    lead is at most MAX_WAIT_S."""

    def __init__(
        self,
        queue: Queue,
        clock: Clock,
        now: float,
        due: Mapping[int, int] | None = None,
        claim_rate: float = 0.0,
    ) -> None:
        self.queue, self.clock = queue, clock
        self._due = due or {}
        self._claim_rate = claim_rate
        self._created = 0
        self._tick_now, self._clock_at_tick = now, clock.now()
        self._pending: list[Run] = []
        self._grouping: dict[int, list[tuple[Run, int]]] = {}
        self._groups: list[list[Run]] = []
        self._lock = threading.Lock()
        self.sent = 0
        self.errors = 0

    def now(self) -> float:
        """The tick's `now` moved on by the time the tick has taken so far."""
        return self._tick_now + (self.clock.now() - self._clock_at_tick)

    def add(self, run: Run) -> None:
        second = math.floor(run.start_at)
        with self._lock:
            self._created += 1
            if self._burst(second):
                groups = self._group(run, second)
                if len(groups) < 10:
                    return
                self._groups = []
                batch: list[Run] = []
            else:
                self._pending.append(run)
                if len(self._pending) < 10:
                    return
                batch, self._pending, groups = self._pending, [], []
        self._send(batch, groups)

    def _group(self, run: Run, second: int) -> list[list[Run]]:
        """Add `run` to its second's open group (closed when full); the closed groups."""
        size = len(json.dumps(self._message(run, 0).body(), separators=(",", ":")))
        group = self._grouping.setdefault(second, [])
        if group and (len(group) == GROUP_RUNS or sum(n for _, n in group) + size > GROUP_BYTES):
            self._groups.append([r for r, _ in group])
            group = self._grouping[second] = []
        group.append((run, size))
        return self._groups

    def release(self) -> None:
        """Send what cannot wait for a fuller batch: the pending starts, and the groups,
        of runs whose message is due to be sent within IMMINENT_S (a tick after downtime,
        a short look-ahead). Called after each write: a run is never held back by the
        writes of other jobs."""
        now = self.now()
        with self._lock:
            batch: list[Run] = []
            if any(self._imminent(r.start_at, now) for r in self._pending):
                batch, self._pending = self._pending, []
            groups: list[list[Run]] = []
            waiting: list[list[Run]] = []
            for group in self._groups:
                (groups if self._imminent(group[0].start_at, now) else waiting).append(group)
            self._groups = waiting
            for second in [s for s in self._grouping if self._imminent(s, now)]:
                groups.append([r for r, _ in self._grouping.pop(second)])
        if batch or groups:
            self._send(batch, groups)

    def _imminent(self, start_at: float, now: float) -> bool:
        return start_at - self._lead(math.floor(start_at)) - now < IMMINENT_S

    def _burst(self, second: int) -> bool:
        return self._due.get(second, 0) >= GROUP_FROM

    def _lead(self, second: int) -> float:
        runs = self._due.get(second)
        if runs is None:
            return float(START_LEAD_S)
        lead = burst_lead(runs, self._claim_rate)
        if not self._burst(second):
            return min(float(MAX_WAIT_S), lead)
        rate = self._measured_rate()
        return lead if rate is None else max(lead, burst_lead(runs, rate))

    def _measured_rate(self) -> float | None:
        """The store's claim calls a second as this tick's writes measure it (a run's
        creation writes it and its job's advance, as its claim writes it and its job's
        slot), once MEASURE_FROM runs are written."""
        elapsed = self.clock.now() - self._clock_at_tick
        if self._created < MEASURE_FROM or elapsed <= 0:
            return None
        return CLAIM_CALLS * self._created / elapsed

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            groups = self._groups + [[r for r, _ in g] for g in self._grouping.values() if g]
            self._groups, self._grouping = [], {}
        if batch or groups:
            self._send(batch, groups)

    def _send(self, batch: list[Run], groups: list[list[Run]]) -> None:
        now = self.now()
        messages: list[StartMessage | StartGroup] = [self._message(r, now) for r in batch]
        for group in groups:
            starts = tuple(self._message(r, now) for r in group)
            messages.append(StartGroup(starts, starts[0].delay))
        runs = len(batch) + sum(len(g) for g in groups)
        try:
            self.queue.send_starts(messages)
        except Exception:  # the sweep re-sends starts of runs that did not begin
            with self._lock:
                self.errors += 1
            log.exception("sending %d start messages failed", runs)
            return
        with self._lock:
            self.sent += runs

    def _message(self, run: Run, now: float) -> StartMessage:
        lead = self._lead(math.floor(run.start_at))
        return start_message(run, start_delay(run.start_at, now, lead), lead, now)


class Firer:
    """Fires a tick's due jobs: writes every slot due by the horizon (several jobs' first
    chunks in one transaction where they fit) and sends the runs' starts."""

    def __init__(self, store: Store, queue: Queue, clock: Clock, settings: Settings) -> None:
        self.store, self.queue, self.clock, self.settings = store, queue, clock, settings
        self.notifications: NotificationService | None = None  # missed slots' events
        self._side_by_side = SideBySide(settings.fire_concurrency, "fire")

    def fire_due(
        self, due: list[Job], now: float, horizon: float, sup: SupervisorRecord, stats: TickStats
    ) -> None:
        """Fire every due job, counting in `stats`: first every job's runs (groups of jobs'
        first chunks side by side on the fire pool) and their starts, then the missed
        slots' ledger records, so that downtime's ledger does not hold on-time runs back."""
        began = self.clock.now()
        plans = [p for job in due if (p := self._plan(job, now, horizon, sup, stats)) is not None]
        sender = StartSender(
            self.queue, self.clock, now, _due_by_second(plans), self.settings.claim_rate
        )
        plans.sort(key=_first_start)  # the most urgent runs in the first transactions
        results = self._side_by_side.map(lambda g: self._write_group(g, sender), _groups(plans))
        sender.flush()
        stats.starts_sent += sender.sent
        stats.errors += sender.errors
        written = [p for group_stats, plans_written in results for p in plans_written]
        for group_stats, _ in results:
            stats.merge(group_stats)
        stats.runs_s = seconds_since(self.clock, began)
        ledgers = [p for p in written if p.ledger]
        until = now + LEDGER_SHARE * self.settings.lookahead_seconds

        def ledger(group: list[JobPlan]) -> TickStats:
            return self._write_ledgers(group, lambda: sender.now() < until)

        for ledger_stats in self._side_by_side.map(ledger, _groups(ledgers, ledger=True)):
            stats.merge(ledger_stats)
        stats.ledger_s = round(seconds_since(self.clock, began) - stats.runs_s, 3)

    @staticmethod
    def _plan(
        job: Job, now: float, horizon: float, sup: SupervisorRecord, stats: TickStats
    ) -> JobPlan | None:
        try:
            plan = plan_job(job, now, horizon, sup)
        except Exception:  # one bad job must not stop the tick for every other one
            stats.errors += 1
            log.exception("job %s not fired this tick", job.job_id)
            return None
        return plan if plan.chunks else None

    def _write_group(
        self, group: list[JobPlan], sender: StartSender
    ) -> tuple[TickStats, list[JobPlan]]:
        """The group's first chunks in one transaction. A job whose condition failed there
        (another supervisor wrote its slots, or the job changed) is left to the next tick,
        which reads it afresh; the others are tried together again. What cannot go
        together (a conflict, a write DynamoDB will not take) goes job by job. Then the
        jobs' further runs. Returns the counts and the plans whose runs were all written."""
        stats = TickStats()
        together, alone = self._together(group, sender, stats)
        for plan in together:
            self._written(plan.chunks[0], stats, sender)
        if together:
            sender.release()
        written: list[JobPlan] = []
        for plan, chunks in [(p, p.runs[1:]) for p in together] + [(p, p.runs) for p in alone]:
            if self._write_job(plan, chunks, stats, sender):
                written.append(plan)
        return stats, written

    def _write_ledgers(self, group: list[JobPlan], in_time: Callable[[], bool]) -> TickStats:
        """Missed slots' ledger records, the group's first chunks together, while
        `in_time`: a long outage's ledger must not delay the next tick's runs. One not
        written (out of time, or its job changed meanwhile) stays noted on its job
        (`Job.unrecorded`): a later tick that fires the job writes it."""
        stats = TickStats()
        together = len(group) > 1 and in_time() and self._ledgers_together(group)
        for plan in group:
            chunks = plan.ledger
            if together:
                self._written(chunks[0], stats, None)
                chunks = chunks[1:]
            for i, write in enumerate(chunks):
                if not in_time():
                    stats.ledger_deferred += sum(len(c.records) for c in chunks[i:])
                    break
                if not self._ledger_written(write):
                    break
                self._written(write, stats, None)
        return stats

    def _ledgers_together(self, group: list[JobPlan]) -> bool:
        """The group's first ledger chunks in one transaction; any refusal leaves each job's
        to be written alone."""
        try:
            return self.store.create_slots([p.ledger[0] for p in group])
        except Exception:
            log.exception("%d jobs' missed slots not written together", len(group))
            return False

    def _ledger_written(self, write: SlotWrite) -> bool:
        try:
            return self.store.create_slots([write])
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("job %s: missed slots left to a later tick", write.job.job_id)
            return False

    def _together(
        self, group: list[JobPlan], sender: StartSender, stats: TickStats
    ) -> tuple[list[JobPlan], list[JobPlan]]:
        """The plans whose first chunks were written in one transaction, and those to write
        one by one; those refused by their own condition are in neither."""
        left = group
        for _ in range(TOGETHER_ATTEMPTS):
            if len(left) < 2:
                break
            try:
                refused = self.store.create_slots_refused(
                    [_stamped(p.chunks[0], sender.now()) for p in left]
                )
            except Exception:
                log.exception("%d jobs' slots not written together; one by one", len(left))
                break
            if refused is None:
                return left, []
            if not refused:
                break
            stats.slot_conflicts += len(refused)
            left = [p for i, p in enumerate(left) if i not in refused]
        return [], left

    def _write_job(
        self, plan: JobPlan, chunks: list[SlotWrite], stats: TickStats, sender: StartSender
    ) -> bool:
        try:
            for write in chunks:
                if not self._create(_stamped(write, sender.now())):
                    stats.slot_conflicts += 1
                    return False
                self._written(write, stats, sender)
                sender.release()
        except StoreUnavailable:
            raise
        except Exception:
            stats.errors += 1
            log.exception("job %s not fired this tick", plan.job.job_id)
            return False
        return True

    def _written(self, write: SlotWrite, stats: TickStats, sender: StartSender | None) -> None:
        if write.unrecorded is not None:
            write.job.unrecorded = list(write.unrecorded)
        if not write.ledger:
            write.job.version += 1
            write.job.next_fire_at = write.next_fire_at
        for record in write.records:
            if record.status == ExStatus.missed:
                stats.slots_missed += 1
                settle_due(self.notifications, self.store, record)
                continue
            stats.runs_created += 1
            stats.catchup_runs += record.catchup
            stats.created_at(self.clock.now() - record.scheduled_start)
            if sender is not None and not record.buffered:  # a waiting one is nudged in turn
                sender.add(record)

    def _create(self, write: SlotWrite) -> bool:
        """Write one job's chunk; a chunk whose answer was lost but that landed counts as
        written. False when another supervisor wrote these slots."""
        job, records = write.job, write.records
        probe = next((r for r in records if r.status == ExStatus.pending), records[0])
        for _ in range(CREATE_ATTEMPTS):
            if self.store.create_slots([write]):
                return True
            fresh = self.store.get_job(job.job_id)
            existing = self.store.get_run(probe.job_id, probe.slot)
            if fresh is None or existing is not None:
                # written by us (the answer was lost) or by another supervisor
                return (
                    fresh is not None
                    and existing is not None
                    and existing.ex_id == probe.ex_id
                    and fresh.next_fire_at == write.next_fire_at
                )
            if fresh.version != job.version or fresh.next_fire_at != job.next_fire_at:
                return False
            # both colliding transactions were cancelled: try again
        return False


TIE_BREAK_S = 1e-6


def _stamped(write: SlotWrite, now: float) -> SlotWrite:
    """The chunk's runs as written now (`stamp`), a microsecond apart in slot order, the
    last at `now`: a job's history is listed by creation time, and runs written together
    must not tie there. Its ledger records are left as planned."""
    runs = sorted((r for r in write.records if r.status != ExStatus.missed), key=_slot_order)
    for i, record in enumerate(runs):
        stamp(record, now - (len(runs) - 1 - i) * TIE_BREAK_S)
    return write


def _slot_order(run: Run) -> float:
    return run.scheduled_start


def _first_start(plan: JobPlan) -> float:
    """When the plan's first run is due to start (a ledger-only plan: never)."""
    starts = [r.start_at for r in plan.chunks[0].records if r.status == ExStatus.pending]
    return min(starts, default=math.inf)


def _groups(plans: list[JobPlan], ledger: bool = False) -> list[list[JobPlan]]:
    """Jobs whose first chunks (of runs, or with `ledger` of ledger records) fit one
    transaction together: at most MAX_TX_ITEMS items and MAX_TX_BYTES (each record
    carries its job's definition)."""
    groups: list[list[JobPlan]] = []
    items = size = 0
    for plan in plans:
        first = plan.ledger[0] if ledger else plan.chunks[0]
        n, b = write_items(first), write_bytes(first)
        if not groups or items + n > MAX_TX_ITEMS or size + b > MAX_TX_BYTES:
            groups.append([])
            items = size = 0
        groups[-1].append(plan)
        items += n
        size += b
    return groups
