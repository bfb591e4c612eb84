"""Seed 000's repairs of a hanging run, as the _resolve API: complete, and rerun."""

from __future__ import annotations

import pytest
from chalice.test import Client

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.transitions import ExStatus, SliceState
from chalicelib.ports import FakeClock
from tests.clients import AS_OWNER
from tests.conftest import T0, drain
from tests.helpers import deliver

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)

RANGE = [{"_op": "range", "end": 4}, {"_op": "noop"}]


def _hanging(container: Container, queue: MemoryQueue, clock: FakeClock) -> tuple[str, str]:
    """A scheduled sliced run whose worker died holding slice 0 (seed 000: a lost DB
    connection at the end of a job)."""
    job, _ = container.jobs.as_(AS_OWNER).submit(
        {
            "name": "h",
            "operations": RANGE,
            "workers": 2,
            "max_retries": 0,
            "schedule": {"rate": "rate(1 hour)"},
        },
        start=True,
    )
    container.supervisor.tick(T0 + 3600)
    clock.t = T0 + 3600
    deliver(container, queue.take()[0])
    a, b = queue.take()
    run = container.store.get_run(job.job_id, "2027-01-15T09:00:00Z")
    assert run is not None
    assert container.store.claim_slice(
        run.ex_id, a.body["slice_id"], "dead", clock.now(), clock.now() + 60
    )
    assert deliver(container, b) == "completed"
    return job.job_id, run.ex_id


def test_complete_marks_the_hanging_run_done_and_the_job_moves_on(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job_id, ex_id = _hanging(container, queue, clock)
    r = client.http.post(f"/v1/ex/{ex_id}/_resolve?action=complete")
    assert (r.status_code, r.json_body["status"]) == (200, "completed")
    run = container.store.get_run_by_ex(ex_id)
    assert run is not None and run.status == ExStatus.completed and run.remaining == 0
    assert {s.state for s in container.store.list_slices(ex_id)} == {SliceState.completed}
    job = container.store.get_job(job_id)
    assert job is not None and job.active_slots == set()
    assert job.next_fire_at == T0 + 7200  # the slot stays done
    drain(container, queue)  # the dead worker's slice message, if it came back, is dropped
    assert client.http.post(f"/v1/ex/{ex_id}/_resolve?action=complete").status_code == 200


def test_rerun_runs_the_same_scheduled_start_again(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job_id, ex_id = _hanging(container, queue, clock)
    r = client.http.post(f"/v1/ex/{ex_id}/_resolve?action=rerun")
    assert r.status_code == 200 and r.json_body["replaces"] == ex_id
    new_ex = r.json_body["ex_id"]
    assert container.store.get_run_by_ex(ex_id) is None  # the old execution is gone
    assert container.store.list_slices(ex_id) == []  # with its partial results
    drain(container, queue)
    runs = container.store.list_runs(job_id)
    assert [(x.slot, x.ex_id, x.status, x.processed) for x in runs] == [
        ("2027-01-15T09:00:00Z", new_ex, ExStatus.completed, 4)
    ]
    job = container.store.get_job(job_id)
    assert job is not None and job.active_slots == set()
    # the next slot is created as usual: no duplicate key, ever
    assert container.supervisor.tick(T0 + 7200).runs_created == 1


def test_resolve_refuses_bad_actions_and_finished_runs(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    _, ex_id = _hanging(container, queue, clock)
    r = client.http.post(f"/v1/ex/{ex_id}/_resolve?action=fix")
    assert r.status_code == 400 and r.json_body["errors"][0]["field"] == "action"
    assert client.http.post(f"/v1/ex/{ex_id}/_resolve").status_code == 400
    assert client.http.post("/v1/ex/nope/_resolve?action=rerun").status_code == 404
    container.executions.stop(container.executions.by_ex(ex_id), 0, blocking=False)
    clock.advance(120)
    container.supervisor.tick(clock.now())
    r = client.http.post(f"/v1/ex/{ex_id}/_resolve?action=complete")
    assert r.status_code == 409 and r.json_body["current_state"] == "stopped"
    r = client.http.post(f"/v1/ex/{ex_id}/_resolve?action=rerun")  # a stopped run may rerun
    assert r.status_code == 200
