"""The cluster as seed 001 shows it (cluster/state, cluster/stats), read off the supervisor
record, the live-runs index and the cluster counters: never a scan."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from chalicelib.config import Settings
from chalicelib.domain.cluster import ClusterTotals, in_flight, run_totals
from chalicelib.domain.identity import SYSTEM, Principal, owner_of
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus
from chalicelib.ports import Alert, Clock, Store
from chalicelib.services.admin import AdminService, NoSchedule, SupervisorView


@dataclass(frozen=True)
class Held:
    """Work a worker function holds now: a run being started, or a run's slices in flight."""

    run: Run
    slices: int


@dataclass(frozen=True)
class ClusterState:
    """The supervisor (None: its schedule has never fired) and what each worker function
    holds: `start` the runs a start worker is slicing or running inline, `slice` the sliced
    runs with slices in flight."""

    supervisor: SupervisorView | None
    start: list[Held] = field(default_factory=list)
    slice: list[Held] = field(default_factory=list)


@dataclass(frozen=True)
class ClusterStats:
    """Cluster-lifetime figures: every ended execution (counted once) plus the live ones'
    progress so far; `queued` is the slices in flight now."""

    totals: ClusterTotals
    queued: int


class ClusterService:
    """Reads for the cluster routes. The stats read also folds ended runs into the sharded
    counters (bounded per call), so the counters stay compact without a call per run."""

    def __init__(self, store: Store, clock: Clock, settings: Settings) -> None:
        self.store, self.clock, self.settings = store, clock, settings
        self.admin = AdminService(store, clock, settings)
        self.who = SYSTEM

    def as_(self, who: Principal) -> ClusterService:
        """The same reads, showing only the runs `who` sees."""
        scoped = copy.copy(self)
        scoped.who = who
        return scoped

    def _live(self) -> list[Run]:
        return [
            r
            for r in self.store.live_runs()
            if r.status not in TERMINAL_EX and self.who.sees(owner_of(r.config))
        ]

    def controllers(self) -> list[Run]:
        """Every execution not yet ended that the caller sees, off the live-runs index
        (seed 001's controllers)."""
        return self._live()

    def alerts(self, limit: int) -> list[Alert]:
        """The newest alerts (hanging runs, slices given up on), newest first."""
        return self.store.list_alerts(limit=limit)

    def state(self) -> ClusterState:
        """The supervisor's state and the work each worker function holds now."""
        try:
            supervisor: SupervisorView | None = self.admin.state()
        except NoSchedule:
            supervisor = None
        now = self.clock.now()
        start: list[Held] = []
        sliced: list[Held] = []
        for run in self._live():
            leased = run.lease_expires_at is not None and run.lease_expires_at >= now
            if run.status == ExStatus.initializing and leased:
                start.append(Held(run, 0))
            elif run.inline and run.status == ExStatus.running and leased:
                start.append(Held(run, 1))
            elif not run.inline and run.status in (ExStatus.running, ExStatus.paused):
                n = in_flight(
                    queued_cursor=run.queued_cursor,
                    processed=run.processed,
                    failed=run.failed,
                    ended=False,
                )
                if n:
                    sliced.append(Held(run, n))
        return ClusterState(supervisor, start, sliced)

    def stats(self, fold_limit: int = 240) -> ClusterStats:
        """Ended executions (folded into the counters first, up to `fold_limit` of them; the
        rest are read from the tally index) plus the live ones."""
        self.store.fold_tallies(self.clock.now(), fold_limit)
        totals = self.store.cluster_totals()
        queued = 0
        for run in self._live():
            totals += run_totals(
                processed=run.processed,
                failed=run.failed,
                started_at=run.started_at,
                finished_at=run.updated,
                workers=run.workers,
                workers_lost=run.workers_lost,
            )
            queued += in_flight(
                queued_cursor=run.queued_cursor,
                processed=run.processed,
                failed=run.failed,
                ended=False,
            )
        return ClusterStats(totals, queued)
