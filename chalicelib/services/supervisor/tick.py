"""The supervisor: one `tick(now)` creates due runs (once per slot) and repairs stalled ones."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from chalicelib.config import Settings
from chalicelib.domain.errors import StoreUnavailable
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import SupervisorState
from chalicelib.ports import Alert, Clock, Notifier, Queue, Store, SupervisorRecord, TickFailure
from chalicelib.services.notifications import NotificationService
from chalicelib.services.supervisor.firing import Firer
from chalicelib.services.supervisor.stats import TickStats, seconds_since
from chalicelib.services.supervisor.sweep import Sweeper
from chalicelib.services.worker import WorkerService

log = logging.getLogger(__name__)
# of the look-ahead, from the tick's start: past it, the sweep leaves what it has not begun
# to the next tick (a restart's lost starts must not hold the next slots' runs back)
SWEEP_SHARE = 0.5


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
        self._unnoted: TickFailure | None = None
        self._firer = Firer(store, queue, clock, settings)
        self._sweeper = Sweeper(
            store, queue, worker, notifier, settings.lease_shards, settings.fire_concurrency
        )
        self.notifications: NotificationService | None = None

    def use_notifications(self, notifications: NotificationService) -> None:
        """Record events (alerts, missed slots) as notifications, and deliver the due ones
        on each tick."""
        self.notifications = notifications
        self._sweeper.notifications = notifications
        self._firer.notifications = notifications

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
        failure_id = uuid.uuid4().hex[:12]  # the record shows it; the detail is only logged
        log.error("tick at %s failed [failure %s]: %s", now, failure_id, err)
        reason = f"the state store could not be reached (failure {failure_id}, see the log)"
        self._unnoted = TickFailure(count=earlier + 1, at=now, reason=reason)
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
        stats.read_s = seconds_since(self.clock, began)
        self._firer.fire_due(due, now, horizon, sup, stats)
        swept = self.clock.now()
        until = began + SWEEP_SHARE * self.settings.lookahead_seconds
        self._sweeper.sweep(now, stats, lambda: self.clock.now() < until)
        stats.sweep_s = seconds_since(self.clock, swept)
        if self.notifications is not None:
            self._deliver(now, stats)
        self._record(now, stats, began)
        return stats

    def _deliver(self, now: float, stats: TickStats) -> None:
        """The outbox's due notifications; a failure to read it is left to the next tick."""
        assert self.notifications is not None
        try:
            done = self.notifications.deliver_due(now)
        except StoreUnavailable:
            stats.errors += 1
            log.exception("notifications not delivered this tick")
            return
        stats.notified += done.delivered
        stats.notify_failed += done.failed

    def _record(self, now: float, stats: TickStats, began: float) -> None:
        stats.duration_s = seconds_since(self.clock, began)
        created = stats.runs_created > 0
        self.store.record_tick(now, stats.figures(), self._unnoted, created=created)
        self._unnoted = None

    def alert(self, reason: str, run: Run, now: float, **detail: Any) -> Alert:
        """Keep an alert and publish it (seed 000: a hanging job should generate an alert)."""
        return self._sweeper.alert(reason, run, now, **detail)
