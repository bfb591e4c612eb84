"""The SupervisorStore and AlertStore contracts."""

from __future__ import annotations

import pytest

from chalicelib.domain.errors import Conflict
from chalicelib.domain.transitions import SupervisorState
from chalicelib.ports import Alert, Store, SupervisorRecord, TickFailure
from tests.contract.records import T


def test_tick_figures_failures_and_the_last_creating_tick(store: Store) -> None:
    store.record_tick(T, {"runs_created": 1}, created=True)  # no record yet: nothing
    store.record_tick_failure(TickFailure(1, T, "x"))
    assert store.get_supervisor() is None
    halted = store.init_supervisor(SupervisorRecord(state=SupervisorState.HALTED, updated=T))
    assert halted.state == SupervisorState.HALTED and halted.halted_at == T
    store.record_tick(T + 60, {"runs_created": 2}, created=True)
    store.record_tick(T + 120, {"runs_created": 0}, TickFailure(2, T + 90, "down"))
    store.record_tick_failure(TickFailure(1, T + 150, "again"))
    got = store.get_supervisor()
    assert got is not None
    assert (got.ticks, got.last_tick_at, got.last_stats) == (2, T + 120, {"runs_created": 0})
    assert got.last_creating_tick == {"tick_at": T + 60, "runs_created": 2}
    assert (got.failed_ticks, got.last_failure_at, got.last_failure) == (3, T + 150, "again")


def test_supervisor_transitions_follow_the_table(store: Store) -> None:
    with pytest.raises(Conflict):
        store.set_supervisor_state(SupervisorState.RUNNING, None, T)  # no record
    store.init_supervisor(SupervisorRecord(updated=T))
    rec = store.set_supervisor_state(SupervisorState.HALTED, "ops", T + 1)
    assert (rec.state, rec.reason, rec.halted_at) == (SupervisorState.HALTED, "ops", T + 1)
    with pytest.raises(Conflict):
        store.set_supervisor_state(SupervisorState.FINISHED, None, T + 2)
    rec = store.set_supervisor_state(SupervisorState.RUNNING, None, T + 3)
    assert (rec.state, rec.restarted_at) == (SupervisorState.RUNNING, T + 3)
    assert store.set_supervisor_state(SupervisorState.RUNNING, "again", T + 4).reason == "again"


def test_alerts_are_kept_once_and_listed_newest_first(store: Store) -> None:
    alerts = [Alert(f"a{i}", T + i, "hanging", job_id="j", detail={"i": i}) for i in range(5)]
    for a in alerts:
        store.put_alert(a)
    store.put_alert(alerts[2])
    assert store.list_alerts() == alerts[::-1]
    assert store.list_alerts(limit=2) == [alerts[4], alerts[3]]
