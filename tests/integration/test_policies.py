"""Scheduling policies on moto: overlap, active-run limits, misfire and catch-up, the missed-run
ledger and its reasons, jitter, windows, and the Lens schedule states over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.errors import Conflict
from chalicelib.domain.jobs import Job
from chalicelib.domain.policies import jitter
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import ExStatus, JobState, SupervisorState
from chalicelib.ports import FakeClock
from tests.clients import AS_OWNER
from tests.conftest import T0, drain
from tests.helpers import deliver, start_due

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)

NOOP = [{"_op": "noop"}, {"_op": "noop"}]
MINUTELY = {"rate": "rate(1 minute)"}


def _submit(c: Container, **kw: object) -> Job:
    body: dict[str, object] = {"name": "p", "operations": NOOP, "schedule": MINUTELY}
    body.update(kw)
    job, _ = c.jobs.as_(AS_OWNER).submit(body, start=True)
    return job


def _runs(c: Container, job: Job) -> dict[str, Run]:
    return {r.slot[11:19]: r for r in c.store.list_runs(job.job_id, limit=1000)}


def _statuses(c: Container, job: Job) -> dict[str, tuple[str, str | None]]:
    return {k: (str(r.status), r.reason) for k, r in sorted(_runs(c, job).items())}


def _job(c: Container, job: Job) -> Job:
    got = c.store.get_job(job.job_id)
    assert got is not None
    return got


SLOW = [{"_op": "range", "end": 2}, {"_op": "noop"}]  # runs while its slices wait


def test_a_run_created_ahead_holds_no_slot_and_every_short_slot_runs(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job = _submit(container, schedule={"rate": "rate(1 minute)"})
    container.supervisor.tick(T0)
    for minute in (1, 2, 3):  # look-ahead: runs are created a tick ahead of their slot
        stats = container.supervisor.tick(T0 + 60 * minute - 4)
        assert stats.runs_created == 1 and _job(container, job).active_slots == set()
        assert start_due(container, queue, clock, T0 + 60 * minute) == ["completed"]
    assert {s for s, _ in _statuses(container, job).values()} == {"completed"}


def test_skip_is_decided_at_the_slots_second_against_what_really_runs(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job = _submit(container, operations=SLOW, workers=1)
    container.supervisor.tick(T0 + 56)  # 08:01 created
    assert start_due(container, queue, clock, T0 + 60) == ["running"]
    container.supervisor.tick(T0 + 116)  # 08:02 created; 08:01 still running
    assert _job(container, job).active_slots == {"2027-01-15T08:01:00Z"}
    assert start_due(container, queue, clock, T0 + 120) == ["skipped"]
    drain(container, queue)  # 08:01 ends
    container.supervisor.tick(T0 + 176)
    assert start_due(container, queue, clock, T0 + 180) == ["running"]
    drain(container, queue)
    assert _statuses(container, job) == {
        "08:01:00": ("completed", None),
        "08:02:00": ("skipped", "overlap"),
        "08:03:00": ("completed", None),
    }
    skipped = _runs(container, job)["08:02:00"]
    assert skipped.finished_at == T0 + 120 and not skipped.holds_slot
    assert _job(container, job).active_slots == set()


def test_buffer_one_starts_the_buffered_slot_when_the_active_run_ends(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job = _submit(container, overlap="buffer_one", operations=SLOW, workers=1)
    container.supervisor.tick(T0 + 56)
    assert start_due(container, queue, clock, T0 + 60) == ["running"]
    container.supervisor.tick(T0 + 116)
    assert start_due(container, queue, clock, T0 + 120) == ["buffered"]
    container.supervisor.tick(T0 + 176)
    assert start_due(container, queue, clock, T0 + 180) == ["skipped"]  # one buffered at most
    assert _job(container, job).buffered_slot == "2027-01-15T08:02:00Z"
    drain(container, queue)  # 08:01 ends, nudges 08:02, which runs to its end
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
    container.supervisor.tick(T0 + 56)
    assert start_due(container, queue, clock, T0 + 60) == ["running"]
    [slice0] = [m for m in queue.messages if m.kind == "slice"]
    queue.messages.remove(slice0)
    assert deliver(container, slice0) == "completed"  # slice 0 done, slice 1 handed out
    container.supervisor.tick(T0 + 116)
    assert start_due(container, queue, clock, T0 + 120) == ["buffered"]
    assert container.supervisor.tick(T0 + 121).finalized == 0
    # no slice was in flight (slice 1 was handed out, not claimed): the sweep stops the
    # run, which frees the slot and nudges the buffered one
    drain(container, queue)
    runs = _runs(container, job)
    old, new = runs["08:01:00"], runs["08:02:00"]
    assert (old.status, old.processed) == (ExStatus.stopped, 1)
    assert "stopped: cancelled by a newer slot" in old.errors[-1]["error"]
    assert (new.status, new.processed) == (ExStatus.completed, 3)


def test_cancel_other_never_cancels_a_run_that_has_not_started(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job = _submit(container, overlap="cancel_other")
    container.supervisor.tick(T0 + 56)
    container.supervisor.tick(T0 + 116)  # 08:01 and 08:02 both created, neither started
    assert _job(container, job).active_slots == set()
    drain(container, queue)
    assert _statuses(container, job) == {
        "08:01:00": ("completed", None),
        "08:02:00": ("completed", None),
    }


def test_allow_with_max_active_runs(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job = _submit(container, overlap="allow", max_active_runs=2, operations=SLOW, workers=1)
    for minute in (1, 2, 3):
        container.supervisor.tick(T0 + 60 * minute - 4)
        start_due(container, queue, clock, T0 + 60 * minute)
    assert _statuses(container, job)["08:03:00"] == ("skipped", "max_active_runs")
    assert len(_job(container, job).active_slots) == 2


def test_allow_without_limit_overlaps_freely(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job = _submit(container, overlap="allow", operations=SLOW, workers=1)
    for minute in (1, 2, 3):
        container.supervisor.tick(T0 + 60 * minute - 4)
        start_due(container, queue, clock, T0 + 60 * minute)
    assert {s for s, _ in _statuses(container, job).values()} == {"running"}
    assert _job(container, job).active_slots == set()  # nothing to count without a limit


def test_max_active_runs_above_one_needs_overlap_allow(container: Container) -> None:
    from chalicelib.domain.errors import InvalidInput

    with pytest.raises(InvalidInput) as exc:
        _submit(container, max_active_runs=3)
    assert "max_active_runs" in exc.value.message


@pytest.mark.parametrize(
    "catchup, grace, now, runs, missed",
    [
        # grace 10 s; at 08:10:30 the slots 08:01..08:10 are missed, all past the grace
        ("none", 10, 630, [], 10),
        ("latest", 10, 630, [], 10),
        ("all", 10, 630, [], 10),
        # grace 120 s: 08:09 and 08:10 are missed within it (08:11 is not due yet)
        ("none", 120, 630, [], 10),
        ("latest", 120, 630, ["08:10:00"], 9),
        ("all", 120, 630, ["08:09:00", "08:10:00"], 8),
        # at 08:10:05, 08:10 is not missed (a tick's slack): it runs on time
        ("latest", 10, 605, ["08:10:00"], 9),
        ("none", 10, 605, ["08:10:00"], 9),
        # at 08:10:05 with grace 120, 08:10 is due on time: `latest` keeps no missed one
        ("latest", 120, 605, ["08:10:00"], 9),
        ("all", 120, 605, ["08:09:00", "08:10:00"], 8),
    ],
)
def test_catchup_policies(
    container: Container, catchup: str, grace: int, now: int, runs: list[str], missed: int
) -> None:
    job = _submit(
        container, overlap="allow", catchup=catchup, max_catchup=3, misfire_grace_seconds=grace
    )
    stats = container.supervisor.tick(T0 + now)
    seen = _statuses(container, job)
    assert sorted(k for k, (s, _) in seen.items() if s == "pending") == runs
    assert [v for v in seen.values() if v[0] == "missed"] == [("missed", "misfire")] * missed
    assert stats.slots_missed == missed
    on_time = T0 + now - 5
    late = {k for k, r in _runs(container, job).items() if r.catchup}
    assert late == {k for k in runs if _runs(container, job)[k].scheduled_start < on_time}
    assert stats.catchup_runs == len(late)
    nxt = _job(container, job).next_fire_at
    assert nxt == T0 + 660


def test_catch_up_runs_wait_for_the_on_time_slot_then_run_one_after_another(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job = _submit(container, catchup="all", misfire_grace_seconds=300, operations=SLOW, workers=1)
    clock.t = T0 + 236
    stats = container.supervisor.tick(T0 + 236)  # 08:01..08:03 missed; 08:04 due in 4 s
    assert (stats.runs_created, stats.catchup_runs, stats.starts_sent) == (4, 3, 1)
    # the catch-up runs wait, in slot order, for the on-time slot: it runs on its second
    assert start_due(container, queue, clock, T0 + 236) == []
    assert len(_job(container, job).waiting_slots) == 3
    assert start_due(container, queue, clock, T0 + 240) == ["running"]
    stored = _job(container, job)
    assert stored.active_slots == {"2027-01-15T08:04:00Z"} and len(stored.waiting_slots) == 3
    drain(container, queue)
    runs = dict(sorted(_runs(container, job).items()))
    assert [r.status for r in runs.values()] == [ExStatus.completed] * 4
    on_time = runs["08:04:00"]
    assert on_time.started_at == T0 + 240
    caught_up = [runs[f"08:0{m}:00"] for m in (1, 2, 3)]
    assert all(r.started_at is not None and r.started_at >= T0 + 240 for r in caught_up)
    nudged = [m.body["slot"][11:19] for m in queue.sent[1:] if m.kind == "start"]
    assert nudged == ["08:01:00", "08:02:00", "08:03:00"]  # after the on-time slot, in order
    assert [r.processed for r in runs.values()] == [2] * 4
    stored = _job(container, job)
    assert (stored.active_slots, stored.waiting_slots, stored.buffered_slot) == (set(), set(), None)


def test_catchup_latest_runs_after_the_on_time_slot_which_runs_on_its_second(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    """The default job (overlap skip, catchup latest): the on-time run is claimed with its
    slot ahead of its second, as any; its end nudges the waiting catch-up run (a default
    job's runs nudge nothing else)."""
    job = _submit(container, operations=SLOW, workers=1)
    clock.t = T0 + 236
    stats = container.supervisor.tick(T0 + 236)  # 08:01..08:03 missed; 08:04 due in 4 s
    assert (stats.runs_created, stats.catchup_runs, stats.slots_missed) == (2, 1, 2)
    assert start_due(container, queue, clock, T0 + 239) == ["running"]
    assert _job(container, job).waiting_slots == {"2027-01-15T08:03:00Z"}
    drain(container, queue)
    runs = _runs(container, job)
    assert runs["08:04:00"].started_at == T0 + 240
    caught_up = runs["08:03:00"]
    assert caught_up.status == ExStatus.completed and caught_up.catchup
    assert caught_up.started_at is not None and caught_up.started_at >= T0 + 240
    assert [runs[f"08:0{m}:00"].status for m in (1, 2)] == [ExStatus.missed] * 2
    stored = _job(container, job)
    assert (stored.active_slots, stored.waiting_slots) == (set(), set())


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


def test_a_state_change_racing_ticks_is_made_on_the_job_as_they_left_it(
    container: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick advancing the schedule between the request's read and its write changes the
    job's version: the suspend is made again on the fresh job, not refused with a 409 (on
    a job every second, almost every suspend would be). Only a job that changes under
    every attempt is a conflict."""
    job = _submit(container)
    write = container.store.set_job_state
    ticks = iter([T0 + 60, T0 + 120])

    def after_a_tick(*args: Any, **kwargs: Any) -> bool:
        at = next(ticks, None)
        if at is not None:
            clock.t = at
            assert container.supervisor.tick(at).runs_created == 1
        return write(*args, **kwargs)

    monkeypatch.setattr(container.store, "set_job_state", after_a_tick)
    suspended = container.jobs.suspend(job.job_id)
    assert (suspended.state, suspended.next_fire_at) == (JobState.SUSPENDED, T0 + 180)
    assert container.jobs.schedule(job.job_id).state == JobState.SCHEDULED

    ticks = iter(T0 + 60 * n for n in range(3, 100))
    with pytest.raises(Conflict) as refused:
        container.jobs.suspend(job.job_id)
    assert refused.value.details["current_state"] == "SCHEDULED"


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


def test_a_jobs_execution_is_never_a_ledger_record(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    """GET /v1/jobs/{id}/ex is the newest run that ran, not a newer skipped slot."""
    job = _submit(container, operations=SLOW, workers=1)
    container.supervisor.tick(T0 + 56)
    start_due(container, queue, clock, T0 + 60)
    container.supervisor.tick(T0 + 116)
    assert start_due(container, queue, clock, T0 + 120) == ["skipped"]  # 08:01 still runs
    assert _statuses(container, job)["08:02:00"] == ("skipped", "overlap")
    ex = client.http.get(f"/v1/jobs/{job.job_id}/ex").json_body
    assert ex["slot"] == "2027-01-15T08:01:00Z" and ex["_status"] == "running"


@pytest.mark.parametrize("overlap", ["skip", "allow"])
def test_a_run_whose_reader_gives_no_slice_completes(
    container: Container, queue: MemoryQueue, clock: FakeClock, overlap: str
) -> None:
    empty = [{"_op": "range", "end": 0}, {"_op": "noop"}]
    job = _submit(container, operations=empty, overlap=overlap)
    on_demand = container.jobs.start_run(job.job_id)
    drain(container, queue)
    container.supervisor.tick(T0 + 56)
    assert start_due(container, queue, clock, T0 + 60) == ["completed"]
    runs = _runs(container, job)
    assert runs["08:01:00"].status == ExStatus.completed
    done = container.store.get_run(job.job_id, on_demand.slot)
    assert done is not None and done.status == ExStatus.completed and done.slices_total == 0
    assert _job(container, job).active_slots == set()


@pytest.mark.parametrize(
    "catchup, late, outcome",
    [
        ("latest", 30, "completed"),  # the latest missed slot: it runs, once
        ("latest", 70, "missed"),  # 08:02 is due too: it is the latest
        ("none", 30, "missed"),
        ("all", 70, "completed"),
        ("all", 90, "missed"),  # past the grace
        ("latest", 4, "completed"),  # within a tick's slack: on time
    ],
)
def test_a_run_whose_start_comes_late_follows_the_catch_up_policy(
    container: Container,
    queue: MemoryQueue,
    clock: FakeClock,
    catchup: str,
    late: int,
    outcome: str,
) -> None:
    job = _submit(container, catchup=catchup, misfire_grace_seconds=80)
    container.supervisor.tick(T0 + 56)
    queue.take()  # the start message is lost (the local stack's queue died with it)
    [run] = _runs(container, job).values()
    clock.t = T0 + 60 + late
    assert container.worker.handle_start(job.job_id, run.slot) == outcome
    got = _runs(container, job)["08:01:00"]
    assert str(got.status) == outcome
    if outcome == "missed":
        assert got.reason == "misfire" and _job(container, job).active_slots == set()


def test_a_late_run_kept_by_catchup_all_waits_its_turn(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job = _submit(container, catchup="all", operations=SLOW, workers=1)
    container.supervisor.tick(T0 + 56)
    queue.take()  # 08:01's start message is lost
    on_demand = container.jobs.start_run(job.job_id)  # holds the job's slot meanwhile
    [run] = [r for r in _runs(container, job).values() if r.slot != on_demand.slot]
    clock.t = T0 + 90
    assert container.worker.handle_start(job.job_id, run.slot) == "buffered"
    waiting = _runs(container, job)["08:01:00"]
    assert waiting.catchup and waiting.buffered
    assert _job(container, job).waiting_slots == {run.slot}
    drain(container, queue)  # the on-demand run ends; 08:01 runs after it
    assert _runs(container, job)["08:01:00"].status == ExStatus.completed


def test_jobs_slots_are_written_together_and_one_by_one_if_refused(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.domain.errors import StoreUnavailable
    from chalicelib.ports import SlotWrite

    jobs = [_submit(container, name=f"j{i}") for i in range(3)]
    seen: list[int] = []
    original = container.store.create_slots

    def too_big_together(writes: list[SlotWrite]) -> bool:
        seen.append(len(writes))
        if len(writes) > 1:  # as DynamoDB refuses a transaction over 4 MB
            raise StoreUnavailable("DynamoDB: ValidationException: Transaction size exceeded")
        return original(writes)

    monkeypatch.setattr(container.store, "create_slots", too_big_together)
    stats = container.supervisor.tick(T0 + 60)
    assert seen == [3, 1, 1, 1] and stats.runs_created == 3 and stats.errors == 0
    assert all(len(_runs(container, j)) == 1 for j in jobs)


def test_a_group_is_bounded_by_items_and_bytes() -> None:
    from chalicelib.ports import SlotWrite
    from chalicelib.services.supervisor.firing import MAX_TX_BYTES, _groups
    from chalicelib.services.supervisor.planning import JobPlan

    def plan(records: int, definition_bytes: int) -> JobPlan:
        job = Job(job_id="j", definition={"pad": "x" * definition_bytes})
        runs = [Run("j", str(i), str(i), float(i), {}) for i in range(records)]
        return JobPlan(job, [SlotWrite(runs, job, None, True)])

    assert [len(g) for g in _groups([plan(24, 10) for _ in range(9)])] == [4, 4, 1]  # 25 items
    big = plan(1, MAX_TX_BYTES // 3)  # 2 items of about a third of the budget each
    assert [len(g) for g in _groups([big, big, big])] == [1, 1, 1]


@pytest.mark.moto  # the listings' order of runs created at once is DynamoDB's (an LSI)
def test_catch_up_all_after_a_suspension_runs_every_missed_slot_one_after_another(
    container: Container, queue: MemoryQueue, clock: FakeClock, client: Client
) -> None:
    """Issue #14's reproduction: a job every 10 s, suspended for 40 s, then resumed: its 4
    missed slots all run, one at a time (overlap skip), none skipped; its runs list in
    slot order."""
    every_10s = {"interval_seconds": 10}
    job = _submit(container, schedule=every_10s, catchup="all", operations=SLOW, workers=1)
    clock.t = T0 + 1
    container.jobs.suspend(job.job_id)
    clock.t = T0 + 41
    container.jobs.schedule(job.job_id)
    container.supervisor.tick(T0 + 41)
    outcomes = start_due(container, queue, clock, T0 + 41)  # every start message at once
    assert outcomes.count("running") == 1 and "skipped" not in outcomes, outcomes
    drain(container, queue)
    slots = ["08:00:40", "08:00:30", "08:00:20", "08:00:10"]
    assert _statuses(container, job) == {s: ("completed", None) for s in sorted(slots)}
    runs = client.http.get(f"/scheduled-jobs/{job.job_id}/runs").json_body
    assert [r["slot"][11:19] for r in runs] == slots  # created at once: newest slot first
    ex = client.http.get(f"/v1/jobs/{job.job_id}/ex").json_body
    assert ex["slot"][11:19] == slots[0]
