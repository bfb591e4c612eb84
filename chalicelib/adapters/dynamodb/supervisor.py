"""The supervisor record: its state (RUNNING / HALTED / FINISHED) and the figures of its
ticks, under one fixed key."""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.update import Action

from chalicelib.adapters.dynamodb._tx import _conditional_update, _is_conditional, _unavailable
from chalicelib.adapters.dynamodb.base import StoreBase
from chalicelib.adapters.dynamodb.models import SupervisorModel
from chalicelib.domain.errors import Conflict
from chalicelib.domain.transitions import SUPERVISOR_MACHINE, SupervisorState
from chalicelib.ports import SupervisorRecord, SupervisorStore, TickFailure

SUPERVISOR_KEY = "supervisor"


def to_supervisor(m: SupervisorModel) -> SupervisorRecord:
    return SupervisorRecord(
        state=SupervisorState(m.state),
        last_tick_at=m.last_tick_at,
        ticks=int(m.ticks or 0),
        last_stats=m.last_stats,
        last_creating_tick=m.last_creating_tick,
        reason=m.reason,
        halted_at=m.halted_at,
        restarted_at=m.restarted_at,
        updated=float(m.updated),
        failed_ticks=int(m.failed_ticks or 0),
        last_failure_at=m.last_failure_at,
        last_failure=m.last_failure,
    )


class SupervisorRecords(StoreBase, SupervisorStore):
    _supervisor = staticmethod(to_supervisor)

    def get_supervisor(self) -> SupervisorRecord | None:
        m = self._item(self.m.supervisor, SUPERVISOR_KEY)
        return None if m is None else to_supervisor(m)

    def init_supervisor(self, record: SupervisorRecord) -> SupervisorRecord:
        V = self.m.supervisor
        try:
            V(
                SUPERVISOR_KEY,
                state=str(record.state),
                ticks=0,
                reason=record.reason,
                halted_at=record.updated if record.state == SupervisorState.HALTED else None,
                updated=record.updated,
            ).save(condition=V.key.does_not_exist())
        except PutError as err:
            if not _is_conditional(err):
                raise _unavailable(err) from err
        found = self.get_supervisor()
        return found or record

    def _failure_actions(self, failure: TickFailure | None) -> list[Action]:
        if failure is None:
            return []
        V = self.m.supervisor
        return [
            V.failed_ticks.add(failure.count),
            V.last_failure_at.set(failure.at),
            V.last_failure.set(failure.reason),
        ]

    def record_tick(
        self,
        now: float,
        stats: dict[str, Any],
        failure: TickFailure | None = None,
        *,
        created: bool = False,
    ) -> None:
        V = self.m.supervisor
        actions: list[Action] = [
            V.last_tick_at.set(now),
            V.ticks.add(1),
            V.last_stats.set(stats),
            V.updated.set(now),
        ]
        if created:
            actions.append(V.last_creating_tick.set({"tick_at": now, **stats}))
        actions += self._failure_actions(failure)
        _conditional_update(V(SUPERVISOR_KEY), actions, V.key.exists())

    def record_tick_failure(self, failure: TickFailure) -> None:
        V = self.m.supervisor
        _conditional_update(V(SUPERVISOR_KEY), self._failure_actions(failure), V.key.exists())

    def set_supervisor_state(
        self, state: SupervisorState, reason: str | None, now: float
    ) -> SupervisorRecord:
        V = self.m.supervisor
        sources = SUPERVISOR_MACHINE.sources_for(state) | {state}
        item = V(SUPERVISOR_KEY)
        stamp = V.halted_at.set(now) if state == SupervisorState.HALTED else V.restarted_at.set(now)
        try:
            item.update(
                actions=[
                    V.state.set(str(state)),
                    # None is written as NULL, as always (PynamoDB's annotation omits None)
                    V.reason.set(reason),  # type: ignore[arg-type]
                    V.updated.set(now),
                    stamp,
                ],
                condition=V.state.is_in(*map(str, sources)),
            )
        except UpdateError as err:
            if _is_conditional(err):
                current = self.get_supervisor()
                raise Conflict(
                    f"supervisor cannot go to {state}",
                    current_state=str(current.state) if current else None,
                ) from err
            raise _unavailable(err) from err
        return self._supervisor(item)
