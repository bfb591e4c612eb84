"""The supervisor's record, the cluster counters and the alerts."""

from __future__ import annotations

import copy
from typing import Any

from chalicelib.adapters.dynamodb.counters import totals_of
from chalicelib.domain.cluster import ClusterTotals
from chalicelib.domain.errors import Conflict
from chalicelib.domain.jobs import due_shard
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import SUPERVISOR_MACHINE, SupervisorState
from chalicelib.ports import (
    Alert,
    AlertStore,
    StatsStore,
    SupervisorRecord,
    SupervisorStore,
    TickFailure,
)
from tests.fakes.tables import Tables, as_json


class SupervisorMixin(Tables, SupervisorStore, AlertStore, StatsStore):
    """The supervisor's record, the cluster counters and the alerts."""

    def get_supervisor(self) -> SupervisorRecord | None:
        return self._read(lambda: self.supervisor)

    def init_supervisor(self, record: SupervisorRecord) -> SupervisorRecord:
        with self._lock:
            if self.supervisor is None:
                halted = record.state == SupervisorState.HALTED
                self.supervisor = SupervisorRecord(
                    state=record.state,
                    ticks=0,
                    reason=record.reason,
                    halted_at=record.updated if halted else None,
                    updated=record.updated,
                )
            return copy.deepcopy(self.supervisor)

    @staticmethod
    def _note_failure(record: SupervisorRecord, failure: TickFailure | None) -> None:
        if failure is not None:
            record.failed_ticks += failure.count
            record.last_failure_at, record.last_failure = failure.at, failure.reason

    def record_tick(
        self,
        now: float,
        stats: dict[str, Any],
        failure: TickFailure | None = None,
        *,
        created: bool = False,
    ) -> None:
        with self._lock:
            record = self.supervisor
            if record is None:
                return
            record.last_tick_at, record.ticks = now, record.ticks + 1
            record.last_stats, record.updated = as_json(stats), now
            if created:
                record.last_creating_tick = as_json({"tick_at": now, **stats})
            self._note_failure(record, failure)

    def record_tick_failure(self, failure: TickFailure) -> None:
        with self._lock:
            if self.supervisor is not None:
                self._note_failure(self.supervisor, failure)

    def set_supervisor_state(
        self, state: SupervisorState, reason: str | None, now: float
    ) -> SupervisorRecord:
        sources = SUPERVISOR_MACHINE.sources_for(state) | {state}
        with self._lock:
            record = self.supervisor
            if record is None or record.state not in sources:
                raise Conflict(
                    f"supervisor cannot go to {state}",
                    current_state=str(record.state) if record else None,
                )
            record.state, record.reason, record.updated = state, reason, now
            if state == SupervisorState.HALTED:
                record.halted_at = now
            else:
                record.restarted_at = now
            return copy.deepcopy(record)

    def _marked(self, shard: int) -> list[Run]:
        found = [
            r
            for r in self.runs.values()
            if r.tally_pending and due_shard(r.ex_id, self.settings.stats_shards) == shard
        ]
        return sorted(found, key=lambda r: r.ex_id)

    def fold_tallies(self, now: float, limit: int = 240) -> int:
        with self._lock:
            folded = 0
            for shard in range(self.settings.stats_shards):
                for run in self._marked(shard)[: max(0, limit - folded)]:
                    run.tally_pending = False
                    self._add_to_counters(shard, run)
                    folded += 1
            return folded

    def cluster_totals(self) -> ClusterTotals:
        with self._lock:
            total = sum(self.counters.values(), ClusterTotals())
            for run in self.runs.values():
                if run.tally_pending:
                    total += totals_of(run)
            return total

    def put_alert(self, alert: Alert) -> None:
        with self._lock:
            self.alerts[f"{alert.created:017.6f}#{alert.alert_id}"] = copy.deepcopy(alert)

    def list_alerts(self, limit: int = 100) -> list[Alert]:
        return self._read(
            lambda: [self.alerts[k] for k in sorted(self.alerts, reverse=True)][:limit]
        )
