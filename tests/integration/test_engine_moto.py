"""The engine end to end on moto: submit, tick, start, slices, finish; retries; repairs."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.transitions import ExStatus, JobState, SliceState
from chalicelib.ports import FakeClock
from tests.conftest import T0, drain
from tests.helpers import deliver
from tests.typed import field_errors

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)


def _job(**kw: object) -> dict[str, object]:
    body: dict[str, object] = {"name": "t", "operations": [{"_op": "noop"}, {"_op": "noop"}]}
    body.update(kw)
    return body


def test_on_demand_single_slice_run_completes_inline(
    container: Container, queue: MemoryQueue
) -> None:
    job, run = container.jobs.submit(_job(), start=True)
    assert run is not None and run.status == ExStatus.pending
    assert drain(container, queue) == 1
    done = container.store.get_run(job.job_id, run.slot)
    assert done is not None
    assert done.status == ExStatus.completed
    assert (done.inline, done.slices_total, done.processed, done.failed) == (True, 1, 1, 0)
    assert container.store.list_slices(run.ex_id) == []  # no slice bookkeeping for one slice


def test_scheduled_job_fires_once_per_slot(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job, run = container.jobs.submit(_job(schedule={"rate": "rate(1 minute)"}), start=True)
    assert run is None and job.state == JobState.SCHEDULED
    assert job.next_fire_at == T0 + 60
    assert container.supervisor.tick(T0).runs_created == 0
    stats = container.supervisor.tick(T0 + 57)  # inside the 5 s look-ahead
    assert stats.runs_created == 1 and stats.jobs_read == 1
    assert [m.delay for m in queue.messages] == [1]  # 3 s ahead, sent two seconds early
    assert container.supervisor.tick(T0 + 58).runs_created == 0  # already advanced
    clock.t = T0 + 60
    drain(container, queue)
    runs = container.store.list_runs(job.job_id)
    assert [(r.slot, r.status) for r in runs] == [("2027-01-15T08:01:00Z", ExStatus.completed)]
    stored = container.store.get_job(job.job_id)
    assert stored is not None and stored.next_fire_at == T0 + 120


def test_multi_slice_run_counts_every_slice_once(container: Container, queue: MemoryQueue) -> None:
    body = _job(
        operations=[{"_op": "range", "start": 0, "end": 95, "size": 10}, {"_op": "noop"}], workers=3
    )
    job, run = container.jobs.submit(body, start=True)
    assert run is not None
    drain(container, queue)
    done = container.store.get_run(job.job_id, run.slot)
    assert done is not None
    assert (done.status, done.slices_total, done.processed, done.remaining) == (
        ExStatus.completed,
        10,
        10,
        0,
    )
    slices = container.store.list_slices(run.ex_id)
    assert [s.request for s in slices][-1] == {"start": 90, "end": 95}
    assert all(s.state == SliceState.completed for s in slices)


def test_at_most_workers_slices_in_flight(container: Container, queue: MemoryQueue) -> None:
    body = _job(operations=[{"_op": "range", "end": 20}, {"_op": "noop"}], workers=4)
    job, run = container.jobs.submit(body, start=True)
    assert run is not None
    deliver(container, queue.take()[0])  # the start
    assert len(queue.messages) == 4
    for _ in range(30):
        in_queue = len(queue.messages)
        assert in_queue <= 4
        if not in_queue:
            break
        deliver(container, queue.messages.pop(0))
    done = container.store.get_run(job.job_id, run.slot)
    assert done is not None and done.status == ExStatus.completed and done.processed == 20


def test_failing_slice_retries_then_fails_the_run(container: Container, queue: MemoryQueue) -> None:
    body = _job(
        operations=[{"_op": "range", "end": 5}, {"_op": "fail", "slices": [2]}],
        max_retries=2,
        workers=2,
    )
    job, run = container.jobs.submit(body, start=True)
    assert run is not None
    drain(container, queue)
    done = container.store.get_run(job.job_id, run.slot)
    assert done is not None
    assert (done.status, done.processed, done.failed, done.has_errors) == (
        ExStatus.failed,
        4,
        1,
        True,
    )
    bad = container.store.get_slice(run.ex_id, "000002")
    assert bad is not None and bad.state == SliceState.error and bad.attempts == 3
    assert "injected failure" in (bad.error or "")
    delays = [m.delay for m in queue.sent if m.kind == "slice" and m.body["slice_id"] == "000002"]
    assert delays == [0, 1, 2]  # first send, then backoff 1 s, 2 s


def test_transient_failure_is_retried_to_success(container: Container, queue: MemoryQueue) -> None:
    body = _job(operations=[{"_op": "noop"}, {"_op": "fail", "slices": [0], "times": 1}])
    job, run = container.jobs.submit(body, start=True)
    assert run is not None
    drain(container, queue)
    done = container.store.get_run(job.job_id, run.slot)
    assert done is not None
    assert (done.status, done.attempts, done.processed) == (ExStatus.completed, 2, 1)


def test_redelivered_slice_message_is_processed_once(
    container: Container, queue: MemoryQueue
) -> None:
    body = _job(operations=[{"_op": "range", "end": 3}, {"_op": "noop"}], workers=3)
    job, run = container.jobs.submit(body, start=True)
    assert run is not None
    deliver(container, queue.take()[0])
    msgs = queue.take()
    assert [deliver(container, m) for m in msgs] == ["completed"] * 3
    assert [deliver(container, m) for m in msgs] == ["dropped"] * 3  # run already final
    done = container.store.get_run(job.job_id, run.slot)
    assert done is not None and (done.processed, done.status) == (3, ExStatus.completed)


def test_duplicate_slice_message_while_running_is_a_no_op(
    container: Container, queue: MemoryQueue
) -> None:
    body = _job(operations=[{"_op": "range", "end": 3}, {"_op": "noop"}], workers=1)
    job, run = container.jobs.submit(body, start=True)
    assert run is not None
    deliver(container, queue.take()[0])
    first = queue.take()[0]
    assert deliver(container, first) == "completed"
    assert deliver(container, first) == "duplicate"
    drain(container, queue)
    done = container.store.get_run(job.job_id, run.slot)
    assert done is not None and (done.processed, done.status) == (3, ExStatus.completed)


def test_worker_dying_after_claim_is_finished_once_by_the_sweep(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    body = _job(
        operations=[{"_op": "range", "end": 2}, {"_op": "noop"}], workers=2, lease_seconds=30
    )
    job, run = container.jobs.submit(body, start=True)
    assert run is not None
    deliver(container, queue.take()[0])
    lost, kept = queue.take()
    # a worker claims slice 0 and dies: no finish, no next message
    assert container.store.claim_slice(
        run.ex_id, lost.body["slice_id"], "dead", clock.now(), clock.now() + 30
    )
    assert deliver(container, kept) == "completed"
    assert container.supervisor.tick(clock.now()).resent == 0  # lease still alive
    clock.advance(31)
    stats = container.supervisor.tick(clock.now())
    assert stats.stalled_read == 1 and stats.resent == 1
    assert drain(container, queue) == 1
    done = container.store.get_run(job.job_id, run.slot)
    assert done is not None
    assert (done.status, done.processed, done.failed) == (ExStatus.completed, 2, 0)
    s0 = container.store.get_slice(run.ex_id, lost.body["slice_id"])
    assert s0 is not None and s0.attempts == 2
    clock.advance(120)
    assert container.supervisor.tick(clock.now()).stalled_read == 0  # final runs leave the index


def test_inline_worker_dying_is_rerun_then_failed_after_max_retries(
    container: Container, queue: MemoryQueue, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    job, run = container.jobs.submit(_job(max_retries=1, lease_seconds=10), start=True)
    assert run is not None

    def die(*a: object, **k: object) -> None:
        raise KeyboardInterrupt  # the Lambda is killed mid-slice

    monkeypatch.setattr("chalicelib.services.start.process", die)
    with pytest.raises(KeyboardInterrupt):
        drain(container, queue)
    clock.advance(12)
    assert container.supervisor.tick(clock.now()).resent == 1  # one retry (max_retries=1)
    with pytest.raises(KeyboardInterrupt):
        drain(container, queue)
    clock.advance(12)
    stats = container.supervisor.tick(clock.now())
    assert (stats.resent, stats.slices_failed) == (0, 1)
    done = container.store.get_run(job.job_id, run.slot)
    assert done is not None and done.status == ExStatus.failed and done.attempts == 2
    assert "lease expired" in done.errors[-1]["error"]


def test_lost_start_message_is_resent_by_the_sweep(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job, run = container.jobs.submit(_job(lease_seconds=20), start=True)
    assert run is not None
    queue.take()  # the start message is lost
    clock.advance(21)
    assert container.supervisor.tick(clock.now()).resent == 1
    assert container.supervisor.tick(clock.now()).resent == 0  # check_at moved on
    drain(container, queue)
    done = container.store.get_run(job.job_id, run.slot)
    assert done is not None and done.status == ExStatus.completed


def test_halted_supervisor_creates_nothing(container: Container, queue: MemoryQueue) -> None:
    from chalicelib.domain.transitions import SupervisorState

    job, _ = container.jobs.submit(_job(schedule={"rate": "rate(1 minute)"}), start=True)
    container.supervisor.state()
    container.store.set_supervisor_state(SupervisorState.HALTED, "test", T0)
    assert container.supervisor.tick(T0 + 60).halted
    assert container.store.list_runs(job.job_id) == []
    rec = container.store.get_supervisor()
    assert rec is not None and rec.last_tick_at == T0 + 60


def test_missed_slots_catch_up_to_the_latest_only(container: Container, queue: MemoryQueue) -> None:
    job, _ = container.jobs.submit(_job(schedule={"rate": "rate(1 minute)"}), start=True)
    stats = container.supervisor.tick(T0 + 3600 + 1)  # an hour of ticks missed
    assert (stats.runs_created, stats.slots_missed, stats.catchup_runs) == (1, 59, 0)
    runs = container.store.list_runs(job.job_id, limit=100)
    assert [r.slot for r in runs if r.status == ExStatus.pending] == ["2027-01-15T09:00:00Z"]
    assert {(r.status, r.reason) for r in runs if r.status != ExStatus.pending} == {
        (ExStatus.missed, "misfire")
    }


def test_one_time_job_expires_after_its_slot(container: Container, queue: MemoryQueue) -> None:
    job, _ = container.jobs.submit(_job(schedule={"at": "2027-01-15T08:00:30Z"}), start=True)
    assert container.supervisor.tick(T0 + 30).runs_created == 1
    stored = container.store.get_job(job.job_id)
    assert stored is not None and stored.state == JobState.EXPIRED
    assert stored.next_fire_at is None
    assert container.supervisor.tick(T0 + 90).jobs_read == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"operations": [{"_op": "noop"}]}, "name"),
        ({"name": "x", "operations": []}, "operations"),
        ({"name": "x", "operations": [{"_op": "nope"}]}, "operations[0]._op"),
        ({"name": "x", "operations": [{"_op": "sleep"}]}, "operations[0]._op"),
        ({"name": "x", "operations": [{"_op": "range", "end": -1}]}, "operations[0].end"),
        ({"name": "x", "operations": [{"_op": "noop"}], "workers": 0}, "workers"),
        ({"name": "x", "operations": [{"_op": "noop"}], "wokers": 2}, "wokers"),
        (
            {"name": "x", "operations": [{"_op": "noop"}], "schedule": {"cron": "61 * * * *"}},
            "schedule.cron",
        ),
        (
            {
                "name": "x",
                "operations": [{"_op": "noop"}],
                "schedule": {"rate": "rate(1 minute)", "timezone": "Mars/Olympus"},
            },
            "schedule.timezone",
        ),
    ],
)
def test_invalid_definitions_name_the_field(
    container: Container, body: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as exc:
        container.jobs.submit(body, start=True)
    fields = [e["field"] for e in field_errors(exc.value)]
    assert field in fields, fields


@pytest.mark.moto  # measures DynamoDB
def test_a_job_that_no_longer_validates_does_not_stop_the_tick(
    container: Container, queue: MemoryQueue
) -> None:
    good, _ = container.jobs.submit(_job(schedule={"rate": "rate(1 minute)"}), start=True)
    bad, _ = container.jobs.submit(_job(schedule={"rate": "rate(1 minute)"}), start=True)
    store = container.store
    # container.store is typed as the Store port; its models are DynamoStore's own
    item = store.m.job.get(bad.job_id)  # type: ignore[attr-defined]
    item.definition = {**item.definition, "workers": -5}  # e.g. a rule tightened later
    item.save()
    stats = container.supervisor.tick(T0 + 60)
    assert (stats.runs_created, stats.errors) == (1, 1)
    assert len(container.store.list_runs(good.job_id)) == 1
    assert container.store.list_runs(bad.job_id) == []
