"""The sweep: runs whose check is due are bumped, timed out, re-sent or given up on, with
an alert for what hangs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from chalicelib.domain.errors import StoreUnavailable
from chalicelib.domain.notifications import events_due
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus
from chalicelib.ports import Alert, Notifier, Queue, StartMessage, Store
from chalicelib.services.notifications import NotificationService, settle_due
from chalicelib.services.supervisor.side_by_side import SideBySide
from chalicelib.services.supervisor.stats import TickStats
from chalicelib.services.worker import WorkerService

log = logging.getLogger(__name__)


class Sweeper:
    """Repairs stalled runs: those whose lease or progress check has expired."""

    def __init__(
        self,
        store: Store,
        queue: Queue,
        worker: WorkerService,
        notifier: Notifier | None,
        lease_shards: int,
        concurrency: int = 1,
    ) -> None:
        self.store, self.queue, self.worker, self.notifier = store, queue, worker, notifier
        self.lease_shards = lease_shards
        # set by the composition root: alerts then go through the notifications' outbox
        self.notifications: NotificationService | None = None
        self._side_by_side = SideBySide(concurrency, "sweep")

    def sweep(
        self, now: float, stats: TickStats, in_time: Callable[[], bool] = lambda: True
    ) -> None:
        """Repair the runs of every lease shard whose check is due by `now`, `concurrency`
        at a time (after a restart, every start the lost queue held is due at once), while
        `in_time`: past it, the runs not yet begun are left, still due, to the next tick, so
        that a backlog does not hold that tick's runs back. The first `concurrency` are
        repaired whatever the time: every tick makes progress."""
        stalled = [
            run for shard in range(self.lease_shards) for run in self.store.stalled_runs(shard, now)
        ]
        stats.stalled_read += len(stalled)
        width = self._side_by_side.width

        def repaired(item: tuple[int, Run]) -> TickStats:
            i, run = item
            if i >= width and not in_time():
                return TickStats(sweep_deferred=1)
            return self._repaired(run, now)

        for run_stats in self._side_by_side.map(repaired, list(enumerate(stalled))):
            stats.merge(run_stats)

    def _repaired(self, run: Run, now: float) -> TickStats:
        stats = TickStats()
        try:
            self._repair(run, now, stats)
        except StoreUnavailable:
            raise
        except Exception:
            stats.errors += 1
            log.exception("run %s not repaired this tick", run.ex_id)
        return stats

    def _bump(self, run: Run, now: float) -> Run | None:
        """Claim this run's repair for this tick: only one supervisor wins the check_at."""
        return self.worker.apply(run, run.bump(now))

    def alert(self, reason: str, run: Run, now: float, **detail: Any) -> Alert:
        """Keep an alert and publish it (seed 000: a hanging job should generate an alert),
        with the run's `timed_out` / `hanging` event for its job's `notify`."""
        alert = self._keep_alert(reason, run, now, detail)
        if self.notifications is not None:
            event = "timed_out" if reason == "timed out" else "hanging"
            self.notifications.event(run, event, now, reason=reason, **detail)
        return alert

    def _keep_alert(self, reason: str, run: Run, now: float, detail: dict[str, Any]) -> Alert:
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
        if self.notifications is not None:
            self.notifications.alert(alert, self.notifier is not None)
        elif self.notifier is not None:
            self.notifier.publish(alert)
        return alert

    def _ended(self, run: Run, ended: Run, reason: str, now: float, **detail: Any) -> None:
        """The sweep ended `run` (`ended`, as written, with its events marked due): the
        alert, then the events recorded and the mark taken off. A supervisor that dies in
        between leaves the mark to the next tick's sweep (`_repair`)."""
        self._keep_alert(reason, run, now, detail)
        settle_due(self.notifications, self.store, ended)

    def _timed_out(self, run: Run, now: float, stats: TickStats) -> bool:
        """No progress (no write) for longer than timeout_seconds: the run is failed."""
        idle = now - run.updated
        if run.status in (ExStatus.paused, ExStatus.stopping) or idle <= run.timeout_seconds:
            return False
        note = f"no progress for {idle:.0f} s (timeout_seconds {run.timeout_seconds})"
        told = {"reason": "timed out", "idle_seconds": round(idle)}
        due = events_due(run.config.get("notify"), {"timed_out": told, "failed": {}})
        failed = self.worker.apply(run, run.time_out(now, note, due))
        if failed is not None:
            stats.alerts += 1
            self._ended(run, failed, "timed out", now, idle_seconds=round(idle))
        return True

    def _repair(self, run: Run, now: float, stats: TickStats) -> None:
        """A run whose check is due: record the events a write left due (a supervisor died
        after it), fail it if it timed out, else nudge what stalled."""
        if run.notify_due:
            stats.notify_recovered += int(settle_due(self.notifications, self.store, run))
        if run.status in TERMINAL_EX or self._timed_out(run, now, stats):
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
            reason = "hanging: the worker was lost"
            told = {"reason": reason, "attempts": run.attempts}
            due = events_due(run.config.get("notify"), {"hanging": told, "failed": {}})
            failed = self.worker.apply(run, run.give_up_inline(now, error, due))
            if failed:
                stats.slices_failed += 1
                stats.finalized += 1
                stats.alerts += 1
                self._ended(run, failed, reason, now, attempts=run.attempts)
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
