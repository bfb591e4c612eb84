"""Supervisor administration (seed 000): state, halt, restart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.config import Settings
from chalicelib.domain.errors import DomainError
from chalicelib.domain.timefmt import iso
from chalicelib.domain.transitions import SupervisorState
from chalicelib.ports import Clock, Store, SupervisorRecord
from chalicelib.services.supervisor.stats import full_figures

# 9999-12-31T23:59:59Z: a horizon past every slot (DynamoDB refuses an infinite number)
LAST_INSTANT = 253402300799.0


class NoSchedule(DomainError):
    """The supervisor's schedule has never fired: nothing is configured to tick."""

    status_code = 503
    code = "no_schedule"


@dataclass(frozen=True)
class SupervisorView:
    """The supervisor's state and record, as the admin API shows them (times in ISO 8601)."""

    state: SupervisorState
    record: SupervisorRecord

    def to_dict(self) -> dict[str, Any]:
        r = self.record
        return {
            "state": str(self.state),
            "reason": r.reason,
            "last_tick_at": iso(r.last_tick_at),
            "ticks": r.ticks,
            "last_tick": full_figures(r.last_stats),
            "last_creating_tick": _with_iso_tick_at(full_figures(r.last_creating_tick)),
            "halted_at": iso(r.halted_at),
            "restarted_at": iso(r.restarted_at),
            "failed_ticks": r.failed_ticks,
            "last_failure_at": iso(r.last_failure_at),
            "last_failure": r.last_failure,
        }


def _with_iso_tick_at(tick: dict[str, Any] | None) -> dict[str, Any] | None:
    if tick is None or tick.get("tick_at") is None:
        return tick
    return {**tick, "tick_at": iso(float(tick["tick_at"]))}


class AdminService:
    """What an operator does to the supervisor. Halting returns at once: ticks stop creating
    runs, and runs already going finish (their workers do not ask the supervisor)."""

    def __init__(self, store: Store, clock: Clock, settings: Settings) -> None:
        self.store, self.clock, self.settings = store, clock, settings

    def _record(self) -> SupervisorRecord:
        record = self.store.get_supervisor()
        if record is None:
            raise NoSchedule("the supervisor's schedule has never fired: no schedule is configured")
        return record

    def _scheduled_jobs_left(self) -> bool:
        return any(
            self.store.due_jobs(shard, LAST_INSTANT, limit=1)
            for shard in range(self.settings.due_shards)
        )

    def state(self) -> SupervisorView:
        """RUNNING, HALTED, or FINISHED when no SCHEDULED job has a slot left."""
        record = self._record()
        if record.state == SupervisorState.HALTED:
            return SupervisorView(SupervisorState.HALTED, record)
        finished = not self._scheduled_jobs_left()
        return SupervisorView(
            SupervisorState.FINISHED if finished else SupervisorState.RUNNING, record
        )

    def halt(self, reason: str | None = None) -> SupervisorView:
        record = self._record()
        if record.state != SupervisorState.HALTED:
            record = self.store.set_supervisor_state(
                SupervisorState.HALTED, reason or "halted by an operator", self.clock.now()
            )
        return SupervisorView(SupervisorState.HALTED, record)

    def restart(self) -> SupervisorView:
        record = self._record()
        if record.state != SupervisorState.RUNNING:
            record = self.store.set_supervisor_state(
                SupervisorState.RUNNING, None, self.clock.now()
            )
        return self.state()
