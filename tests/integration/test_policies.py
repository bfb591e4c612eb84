"""Scheduling policies on moto: overlap, active-run limits, misfire and catch-up, the missed-run
ledger and its reasons, jitter, windows, and the Lens schedule states over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.jobs import Job
from chalicelib.domain.policies import jitter
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import ExStatus, JobState, SupervisorState
from chalicelib.ports import FakeClock
from tests.conftest import T0, drain
from tests.helpers import deliver

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)

NOOP = [{"_op": "noop"}, {"_op": "noop"}]
MINUTELY = {"rate": "rate(1 minute)"}


def _submit(c: Container, **kw: object) -> Job:
    body: dict[str, object] = {"name": "p", "operations": NOOP, "schedule": MINUTELY}
    body.update(kw)
    job, _ = c.jobs.submit(body, start=True)
    return job


def _runs(c: Container, job: Job) -> dict[str, Run]:
    return {r.slot[11:19]: r for r in c.store.list_runs(job.job_id, limit=1000)}


def _statuses(c: Container, job: Job) -> dict[str, tuple[str, str | None]]:
    return {k: (str(r.status), r.reason) for k, r in sorted(_runs(c, job).items())}


def _job(c: Container, job: Job) -> Job:
    got = c.store.get_job(job.job_id)
    assert got is not None
    return got


def test_skip_records_the_overlapping_slot_and_runs_the_next(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job = _submit(container)
    container.supervisor.tick(T0 + 60)
    first = queue.take()  # run 08:01 is created but has not run yet
    stats = container.supervisor.tick(T0 + 120)
    assert (stats.runs_created, stats.slots_skipped, stats.starts_sent) == (0, 1, 0)
    clock.t = T0 + 121
    assert [deliver(container, m) for m in first] == ["completed"]
    assert _job(container, job).active_slots == set()
    assert container.supervisor.tick(T0 + 180).runs_created == 1
    assert _statuses(container, job) == {
        "08:01:00": ("completed", None),
        "08:02:00": ("skipped", "overlap"),
        "08:03:00": ("pending", None),
    }
    assert _job(container, job).active_slots == {"2027-01-15T08:03:00Z"}


def test_buffer_one_starts_the_buffered_slot_when_the_active_run_ends(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job = _submit(container, overlap="buffer_one")
    container.supervisor.tick(T0 + 60)
    first = queue.take()
    stats = container.supervisor.tick(T0 + 120)
    assert (stats.runs_buffered, stats.starts_sent) == (1, 0)
    assert container.supervisor.tick(T0 + 180).slots_skipped == 1  # one buffered at most
    assert _job(container, job).buffered_slot == "2027-01-15T08:02:00Z"
    clock.t = T0 + 181
    queue.take()  # the sweep's re-sends of the overdue starts (harmless duplicates)
    assert [deliver(container, m) for m in first] == ["completed"]
    assert [m.body["slot"] for m in queue.messages] == ["2027-01-15T08:02:00Z"]  # the nudge
    drain(container, queue)
    assert _statuses(container, job) == {
        "08:01:00": ("completed", None),
        "08:02:00": ("completed", None),
        "08:03:00": ("skipped", "overlap"),
    }
    stored = _job(container, job)
    assert stored.active_slots == set() and stored.buffered_slot is None


def test_cancel_other_stops_the_active_run_then_starts_the_new_one(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    ops = [{"_op": "range", "end": 3}, {"_op": "noop"}]
    job = _submit(container, overlap="cancel_other", operations=ops, workers=1)
    container.supervisor.tick(T0 + 60)
    clock.t = T0 + 60
    deliver(container, queue.take()[0])  # run 08:01 starts: 3 slices, one at a time
    assert deliver(container, queue.take()[0]) == "completed"  # slice 0 done, slice 1 queued
    clock.t = T0 + 120
    stats = container.supervisor.tick(T0 + 120)
    # no slice was in flight (slice 1 was handed out, not claimed): the same tick's sweep
    # stops the run, which frees the slot and nudges the buffered one
    assert (stats.runs_buffered, stats.runs_cancelled) == (1, 1)
    outcomes = sorted(deliver(container, m) for m in queue.take())
    assert outcomes == ["dropped", "running"]  # the old slice is refused, the new run starts
    drain(container, queue)
    runs = _runs(container, job)
    old, new = runs["08:01:00"], runs["08:02:00"]
    assert (old.status, old.processed) == (ExStatus.stopped, 1)
    assert "stopped: cancelled by a newer slot" in old.errors[-1]["error"]
    assert (new.status, new.processed) == (ExStatus.completed, 3)


def test_a_pending_run_is_cancelled_at_once(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job = _submit(container, overlap="cancel_other")
    container.supervisor.tick(T0 + 60)
    queue.take()
    stats = container.supervisor.tick(T0 + 120)
    assert stats.runs_cancelled == 1
    assert [m.body["slot"] for m in queue.messages] == ["2027-01-15T08:02:00Z"]
    clock.t = T0 + 120
    drain(container, queue)
    assert _statuses(container, job) == {
        "08:01:00": ("stopped", None),
        "08:02:00": ("completed", None),
    }


def test_allow_with_max_active_runs(container: Container, queue: MemoryQueue) -> None:
    job = _submit(container, overlap="allow", max_active_runs=2)
    for minute in (1, 2, 3):
        container.supervisor.tick(T0 + 60 * minute)
    assert _statuses(container, job)["08:03:00"] == ("skipped", "max_active_runs")
    assert len(_job(container, job).active_slots) == 2


def test_allow_without_limit_overlaps_freely(container: Container, queue: MemoryQueue) -> None:
    job = _submit(container, overlap="allow")
    for minute in (1, 2, 3):
        container.supervisor.tick(T0 + 60 * minute)
    assert {s for s, _ in _statuses(container, job).values()} == {"pending"}
    assert _job(container, job).active_slots == set()  # nothing to count without a limit


def test_max_active_runs_above_one_needs_overlap_allow(container: Container) -> None:
    from chalicelib.domain.errors import InvalidInput

    with pytest.raises(InvalidInput) as exc:
        _submit(container, max_active_runs=3)
    assert "max_active_runs" in exc.value.message


@pytest.mark.parametrize(
    "catchup, now, runs, missed",
    [
        # grace 10 s; at 08:10:30 the slots 08:01..08:10 are missed and 08:11 is not due yet
        ("none", 630, [], 10),
        ("latest", 630, ["08:10:00"], 9),
        ("all", 630, ["08:08:00", "08:09:00", "08:10:00"], 7),  # max_catchup 3
        # at 08:10:05, 08:10 is late but within the grace: it is the latest, it runs
        ("latest", 605, ["08:10:00"], 9),
        ("none", 605, ["08:10:00"], 9),
    ],
)
def test_catchup_policies(
    container: Container, catchup: str, now: int, runs: list[str], missed: int
) -> None:
    job = _submit(
        container, overlap="allow", catchup=catchup, max_catchup=3, misfire_grace_seconds=10
    )
    stats = container.supervisor.tick(T0 + now)
    seen = _statuses(container, job)
    assert sorted(k for k, (s, _) in seen.items() if s == "pending") == runs
    assert [v for v in seen.values() if v[0] == "missed"] == [("missed", "misfire")] * missed
    assert stats.slots_missed == missed
    nxt = _job(container, job).next_fire_at
    assert nxt == T0 + 660


def test_a_suspended_job_fires_nothing_and_its_missed_slots_say_so(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job = _submit(container)
    clock.t = T0 + 10
    assert container.jobs.suspend(job.job_id).state == JobState.SUSPENDED
    assert container.supervisor.tick(T0 + 200).jobs_read == 0
    clock.t = T0 + 300
    resumed = container.jobs.schedule(job.job_id)
    assert resumed.state == JobState.SCHEDULED and resumed.next_fire_at == T0 + 60
    stats = container.supervisor.tick(T0 + 301)
    assert (stats.slots_missed, stats.runs_created) == (4, 1)
    seen = _statuses(container, job)
    assert [seen[f"08:0{m}:00"] for m in (1, 2, 3, 4)] == [("missed", "suspended")] * 4
    assert seen["08:05:00"] == ("pending", None)


def test_slots_missed_while_the_supervisor_was_halted_say_so(container: Container) -> None:
    job = _submit(container, catchup="none")
    container.supervisor.state()
    container.store.set_supervisor_state(SupervisorState.HALTED, "maintenance", T0 + 30)
    assert container.supervisor.tick(T0 + 150).halted
    container.store.set_supervisor_state(SupervisorState.RUNNING, None, T0 + 200)
    container.supervisor.tick(T0 + 301)  # 08:01..08:03 missed while halted, 08:04 after
    seen = _statuses(container, job)
    assert [seen[f"08:0{m}:00"] for m in (1, 2, 3)] == [("missed", "halted")] * 3
    assert seen["08:04:00"] == ("missed", "misfire")
    assert seen["08:05:00"] == ("pending", None)


def test_jitter_delays_the_start_stably(container: Container, queue: MemoryQueue) -> None:
    job = _submit(container, jitter_seconds=40)
    container.supervisor.tick(T0 + 55)
    run = _runs(container, job)["08:01:00"]
    j = jitter(job.job_id, T0 + 60, 40)
    assert run.start_after == T0 + 60 + j and 0 <= j <= 40
    assert [m.delay for m in queue.messages] == [max(0, 60 + j - 55 - 2)]  # two seconds early


def test_a_job_expires_past_end_at(container: Container, queue: MemoryQueue) -> None:
    schedule = {**MINUTELY, "end_at": "2027-01-15T08:02:30Z"}
    job = _submit(container, schedule=schedule, overlap="allow")
    container.supervisor.tick(T0 + 60)
    assert _job(container, job).state == JobState.SCHEDULED
    container.supervisor.tick(T0 + 120)
    stored = _job(container, job)
    assert stored.state == JobState.EXPIRED and stored.next_fire_at is None
    assert sorted(_runs(container, job)) == ["08:01:00", "08:02:00"]


def _post(client: Client, path: str, body: object | None = None) -> tuple[int, dict[str, Any]]:
    r = client.http.post(
        path,
        body=json.dumps(body) if body is not None else "",
        headers={"Content-Type": "application/json"},
    )
    return r.status_code, r.json_body


def test_lens_schedule_states_over_http(client: Client) -> None:
    status, body = _post(
        client, "/v1/jobs", {"name": "l", "operations": NOOP, "schedule": {"cron": "*/5 * * * *"}}
    )
    job_id = body["job_id"]
    assert client.http.get(f"/v1/jobs/{job_id}").json_body["schedule_state"] == "NEW"
    for action, state in (
        ("_schedule", "SCHEDULED"),
        ("_schedule", "SCHEDULED"),
        ("_suspend", "SUSPENDED"),
        ("_suspend", "SUSPENDED"),
        ("_schedule", "SCHEDULED"),
        ("_expire", "EXPIRED"),
        ("_expire", "EXPIRED"),
    ):
        status, body = _post(client, f"/v1/jobs/{job_id}/{action}")
        assert (status, body["schedule_state"]) == (200, state), action
    status, body = _post(client, f"/v1/jobs/{job_id}/_schedule")
    assert status == 409 and body["current_state"] == "EXPIRED"
    status, body = _post(client, f"/v1/jobs/{job_id}/_suspend")
    assert status == 409 and body["current_state"] == "EXPIRED"


def test_scheduling_a_job_without_schedule_is_a_conflict(client: Client) -> None:
    _, body = _post(client, "/v1/jobs", {"name": "n", "operations": NOOP})
    status, err = _post(client, f"/v1/jobs/{body['job_id']}/_schedule")
    assert status == 409 and err["current_state"] == "NEW"
    assert _post(client, "/v1/jobs/nope/_suspend")[0] == 404


def test_a_jobs_execution_is_never_a_ledger_record(client: Client, container: Container) -> None:
    """GET /v1/jobs/{id}/ex is the newest run that ran, not a newer skipped slot."""
    job = _submit(container)
    container.supervisor.tick(T0 + 60)
    container.supervisor.tick(T0 + 120)  # 08:02 is skipped: 08:01 is still active
    assert _statuses(container, job)["08:02:00"] == ("skipped", "overlap")
    ex = client.http.get(f"/v1/jobs/{job.job_id}/ex").json_body
    assert ex["slot"] == "2027-01-15T08:01:00Z" and ex["_status"] == "pending"
