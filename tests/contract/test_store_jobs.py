"""The JobStore contract: versioned, conditional job writes and the due index."""

from __future__ import annotations

import pytest

from chalicelib.config import Settings
from chalicelib.domain.errors import Conflict
from chalicelib.domain.jobs import due_shard
from chalicelib.domain.transitions import ExStatus, JobState
from chalicelib.ports import Store
from tests.contract.records import DEF, T, make_job, make_run, stored_job, stored_run


def _due(store: Store, settings: Settings, horizon: float) -> set[str]:
    return {j.job_id for s in range(settings.due_shards) for j in store.due_jobs(s, horizon)}


def test_due_jobs_are_in_their_shard_in_fire_order_and_limited(
    store: Store, settings: Settings
) -> None:
    jobs = [make_job(next_fire_at=T + i) for i in range(6)]
    for j in jobs:
        store.create_job(j)
    shards = settings.due_shards
    for shard in range(shards):
        got = store.due_jobs(shard, T + 100)
        mine = [j for j in jobs if due_shard(j.job_id, shards) == shard]
        assert [j.job_id for j in got] == [j.job_id for j in mine]
        assert all(due_shard(j.job_id, shards) == shard for j in got)
    shard = due_shard(jobs[0].job_id, shards)
    assert len(store.due_jobs(shard, T + 100, limit=1)) == 1


def test_set_job_state_follows_the_table_and_the_version(store: Store, settings: Settings) -> None:
    job = make_job()
    store.create_job(job)
    assert store.set_job_state(job, JobState.SUSPENDED, T, extra={"suspended_at": T}, now=T)
    got = store.get_job(job.job_id)
    assert got is not None and (got.state, got.version, got.next_fire_at) == (
        JobState.SUSPENDED,
        1,
        T,
    )
    assert got.suspended_at == T
    assert job.job_id not in _due(
        store, settings, T + 10
    )  # a suspended job keeps its slot, off the index
    assert not store.set_job_state(job, JobState.SCHEDULED, T, now=T)  # stale version
    assert store.set_job_state(got, JobState.SCHEDULED, T + 60, extra={"suspended_at": None})
    again = store.get_job(job.job_id)
    assert again is not None and again.suspended_at is None and again.next_fire_at == T + 60
    assert job.job_id in _due(store, settings, T + 60)
    assert store.set_job_state(again, JobState.EXPIRED, None, now=T)
    expired = store.get_job(job.job_id)
    assert expired is not None
    assert not store.set_job_state(expired, JobState.SCHEDULED, T, now=T)  # EXPIRED is final
    assert stored_job(store, job.job_id).state == JobState.EXPIRED


def test_release_slots_frees_only_the_named_slots(store: Store) -> None:
    job = make_job()
    store.create_job(job)
    runs = [make_run(job, T + i) for i in range(3)]
    assert all(store.create_run(r, limit=3) for r in runs)
    store.release_slots(job.job_id, [runs[0].slot, "unknown"])
    store.release_slots(job.job_id, [])
    store.release_slots("no-such-job", [runs[1].slot])
    got = store.get_job(job.job_id)
    assert got is not None and got.active_slots == {runs[1].slot, runs[2].slot}


def test_update_job_is_conditional_on_version_and_not_deleted(store: Store) -> None:
    job = make_job()
    store.create_job(job)
    new = {**DEF, "name": "renamed"}
    assert store.update_job(job, new, None, T + 1)
    assert not store.update_job(job, {**DEF, "name": "lost"}, None, T + 2)
    got = store.get_job(job.job_id)
    assert got is not None and got.definition["name"] == "renamed" and got.version == 1
    assert store.update_job(got, new, (JobState.SUSPENDED, T + 60, T), T + 3)
    moved = store.get_job(job.job_id)
    assert moved is not None and (moved.state, moved.next_fire_at, moved.anchor) == (
        JobState.SUSPENDED,
        T + 60,
        T,
    )
    assert store.set_job_active(moved, False, T + 4)
    inactive = store.get_job(job.job_id)
    assert inactive is not None and not inactive.active and inactive.version == 3
    assert not store.set_job_active(moved, True, T + 5)  # stale


def test_a_job_holding_a_slot_cannot_be_deleted(store: Store, settings: Settings) -> None:
    job = make_job()
    store.create_job(job)
    run = make_run(job)
    assert store.create_run(run, limit=1)
    assert not store.delete_job(job, T)
    store.release_slots(job.job_id, [run.slot])  # taking and freeing slots keep the version
    assert store.delete_job(job, T + 1)
    gone = store.get_job(job.job_id)
    assert gone is not None and gone.deleted and not gone.active and gone.deleted_on == T + 1
    assert gone.next_fire_at is None and job.job_id not in _due(store, settings, T + 10_000)
    assert not store.delete_job(job, T + 2)  # stale
    assert not store.delete_job(gone, T + 2)  # once
    assert not store.update_job(gone, DEF, None, T + 3)
    assert not store.set_job_active(gone, True, T + 3)


def test_mark_runs_deleted_marks_terminal_runs_once(store: Store) -> None:
    job = make_job()
    store.create_job(job)
    done = make_run(job, T, status=ExStatus.completed)
    live = make_run(job, T + 60, status=ExStatus.running)
    skipped = make_run(job, T + 120, status=ExStatus.skipped)
    for r in (done, live, skipped):
        assert store.create_run(r)
    assert store.mark_runs_deleted(job.job_id) == 2
    assert store.mark_runs_deleted(job.job_id) == 0
    assert stored_run(store, job.job_id, done.slot).deleted
    assert not stored_run(store, job.job_id, live.slot).deleted


def test_create_job_with_its_first_run_writes_both_or_neither(store: Store) -> None:
    job = make_job(state=JobState.NEW, next_fire_at=None)
    run = make_run(job, holds_slot=True)
    job.active_slots = {run.slot}
    store.create_job(job, run)
    assert stored_job(store, job.job_id).active_slots == {run.slot}
    assert stored_run(store, job.job_id, run.slot).holds_slot
    with pytest.raises(Conflict):  # the job exists: nothing is written again
        store.create_job(job, make_run(job, slot_ts=T + 1))
    assert store.get_run(job.job_id, make_run(job, slot_ts=T + 1).slot) is None
    clash = make_job(state=JobState.NEW, next_fire_at=None)
    taken = make_run(clash)
    store.create_run(taken)
    with pytest.raises(Conflict):
        store.create_job(clash, make_run(clash))  # its run's key exists: no job either
    assert store.get_job(clash.job_id) is None
