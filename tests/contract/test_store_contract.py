"""One contract for the Store port, run over moto and over DynamoDB Local."""

from __future__ import annotations

import uuid

import pytest

from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.domain.errors import Conflict
from chalicelib.domain.jobs import due_shard
from chalicelib.domain.runs import Guard, Run, RunTransition, scheduled_slot
from chalicelib.domain.slices import slice_id_for
from chalicelib.domain.transitions import ExStatus, JobState, SliceState, SupervisorState
from chalicelib.ports import SlotWrite, SupervisorRecord
from tests.contract.records import DEF, T, make_job, make_run, make_slices


def test_jobs_round_trip_and_duplicate_ids_conflict(store: DynamoStore) -> None:
    job = make_job()
    store.create_job(job)
    got = store.get_job(job.job_id)
    assert got is not None and got.definition == DEF and got.state == JobState.SCHEDULED
    with pytest.raises(Conflict):
        store.create_job(job)
    assert store.get_job("missing") is None


def test_due_index_is_sparse_and_bounded_by_horizon(store: DynamoStore) -> None:
    shards = store.settings.due_shards
    due, later, new = (
        make_job(next_fire_at=T),
        make_job(next_fire_at=T + 600),
        make_job(JobState.NEW, None),
    )
    for j in (due, later, new):
        store.create_job(j)
    found = [j.job_id for s in range(shards) for j in store.due_jobs(s, T + 5)]
    assert found == [due.job_id]
    assert [j.job_id for j in store.due_jobs(due_shard(due.job_id, shards), T + 5)] == [due.job_id]
    everything = {j.job_id for s in range(shards) for j in store.due_jobs(s, T + 10_000)}
    assert everything == {due.job_id, later.job_id}


def test_scheduled_run_creation_is_once_per_slot_and_atomic(store: DynamoStore) -> None:
    job = make_job()
    store.create_job(job)
    assert store.create_slots([SlotWrite([make_run(job)], job, T + 60, False)])
    stale = make_job()
    stale.job_id = job.job_id  # same version 0: the other supervisor's view
    assert not store.create_slots([SlotWrite([make_run(stale)], stale, T + 60, False)])
    # a new slot with a stale version writes nothing either
    assert not store.create_slots([SlotWrite([make_run(stale, T + 60)], stale, T + 120, False)])
    assert [r.slot for r in store.list_runs(job.job_id)] == [scheduled_slot(T)]
    got = store.get_job(job.job_id)
    assert got is not None and (got.version, got.next_fire_at) == (1, T + 60)


def test_expiring_a_job_takes_it_off_the_due_index(store: DynamoStore) -> None:
    job = make_job()
    store.create_job(job)
    assert store.create_slots([SlotWrite([make_run(job)], job, None, True)])
    got = store.get_job(job.job_id)
    assert got is not None and got.state == JobState.EXPIRED and got.next_fire_at is None
    assert all(store.due_jobs(s, T + 10_000) == [] for s in range(store.settings.due_shards))


def test_on_demand_run_is_put_if_absent_and_found_by_ex_id(store: DynamoStore) -> None:
    job = make_job()
    run = make_run(job)
    assert store.create_run(run)
    assert not store.create_run(make_run(job))
    got = store.get_run_by_ex(run.ex_id)
    assert got is not None and got.slot == run.slot
    assert store.get_run_by_ex("nope") is None


def test_run_transitions_are_conditional(store: DynamoStore) -> None:
    job = make_job()
    run = make_run(job)
    store.create_run(run)
    running = frozenset({ExStatus.running})

    def apply(guard: Guard, sets: dict[str, object], target: ExStatus | None = None) -> Run | None:
        return store.apply_run(run, RunTransition(guard, target, sets))

    claimed = store.apply_run(
        run,
        RunTransition(
            Guard(frozenset({ExStatus.pending}), lease_expired_before=T),
            ExStatus.running,
            {"lease_token": "a", "lease_expires_at": T + 30},
            {"attempts": 1},
        ),
    )
    assert claimed is not None and claimed.attempts == 1
    # a second claimer loses: the lease is alive
    assert apply(Guard(running, lease_expired_before=T + 10), {"lease_token": "b"}) is None
    # ... until it expires
    assert apply(Guard(running, lease_expired_before=T + 31), {"lease_token": "b"})
    assert apply(Guard(running, lease_token="a"), {"result": 1}) is None
    assert apply(Guard(running, lease_token="b"), {"slices_total": 2, "queued_cursor": 1})
    nxt = claimed.hand_out_next(T)
    assert store.apply_run(run, nxt) is not None
    got = store.get_run(run.job_id, run.slot)
    assert got is not None and got.queued_cursor == 2
    assert store.apply_run(run, nxt) is None
    finish = Guard(running, remaining_zero=True, check_at=T + 1)
    assert apply(finish, {}, ExStatus.completed) is None
    done = apply(Guard(running, remaining_zero=True), {}, ExStatus.completed)
    assert done is not None and done.status == ExStatus.completed and done.check_at is None


def test_illegal_transitions_are_never_written(store: DynamoStore) -> None:
    job = make_job()
    run = make_run(job, status=ExStatus.completed)
    store.create_run(run)
    for target in (ExStatus.running, ExStatus.pending, ExStatus.failed):
        anywhere = Guard(frozenset(ExStatus))
        assert store.apply_run(run, RunTransition(anywhere, target)) is None
    got = store.get_run(job.job_id, run.slot)
    assert got is not None and got.status == ExStatus.completed


def test_stalled_runs_index_holds_only_live_runs_past_check_at(store: DynamoStore) -> None:
    job = make_job()
    live, later, done = make_run(job, T), make_run(job, T + 60), make_run(job, T + 120)
    done.status = ExStatus.completed
    for r in (live, later, done):
        store.create_run(r)
    found = [
        r.ex_id for s in range(store.settings.lease_shards) for r in store.stalled_runs(s, T + 31)
    ]
    assert found == [live.ex_id]


def test_put_slices_never_overwrites_existing(store: DynamoStore) -> None:
    ex = str(uuid.uuid4())
    assert store.put_slices(make_slices(ex, 30)) == 30
    assert store.claim_slice(ex, slice_id_for(3), "w", T, T + 30)
    assert store.put_slices(make_slices(ex, 31)) == 1
    got = store.get_slice(ex, slice_id_for(3))
    assert got is not None and got.state == SliceState.started
    assert [s.order for s in store.list_slices(ex)] == list(range(31))


def test_slice_claims_leases_and_single_counting(store: DynamoStore) -> None:
    job = make_job()
    run = make_run(job, status=ExStatus.running, slices_total=1, remaining=1)
    store.create_run(run)
    ex = run.ex_id
    store.put_slices(make_slices(ex, 1))
    sid = slice_id_for(0)
    first = store.claim_slice(ex, sid, "a", T, T + 30)
    assert first is not None and first.attempts == 1
    assert store.claim_slice(ex, sid, "b", T + 10, T + 40) is None
    second = store.claim_slice(ex, sid, "b", T + 31, T + 61)
    assert second is not None and second.attempts == 2
    assert not store.finish_slice(first, run, first.complete("a", T + 32, 1))
    assert store.finish_slice(second, run, second.complete("b", T + 33, {"ok": 1}))
    assert not store.finish_slice(second, run, second.complete("b", T + 34, 2))
    got = store.get_run(job.job_id, run.slot)
    assert got is not None and (got.processed, got.remaining) == (1, 0)
    sl = store.get_slice(ex, sid)
    assert sl is not None and sl.state == SliceState.completed and sl.result == {"ok": 1}


def test_release_and_sweep_failure_of_a_slice(store: DynamoStore) -> None:
    job = make_job()
    run = make_run(job, status=ExStatus.running, slices_total=2, remaining=2)
    store.create_run(run)
    store.put_slices(make_slices(run.ex_id, 2))
    a = store.claim_slice(run.ex_id, slice_id_for(0), "a", T, T + 30)
    assert a is not None
    assert not store.release_slice(a, "other", T + 5, "boom", T)
    assert store.release_slice(a, "a", T + 5, "boom", T)
    b = store.claim_slice(run.ex_id, slice_id_for(1), "b", T, T + 30)
    assert b is not None
    assert store.finish_slice(b, run, b.abandon(T + 40, "lease lost"))
    got = store.get_run(job.job_id, run.slot)
    assert got is not None and (got.failed, got.remaining, got.has_errors) == (1, 1, True)
    s0 = store.get_slice(run.ex_id, slice_id_for(0))
    assert s0 is not None and s0.state == SliceState.pending and s0.error == "boom"


def test_supervisor_record(store: DynamoStore) -> None:
    assert store.get_supervisor() is None
    rec = store.init_supervisor(SupervisorRecord(updated=T))
    assert rec.state == SupervisorState.RUNNING
    assert (
        store.init_supervisor(SupervisorRecord(state=SupervisorState.HALTED)).state
        == SupervisorState.RUNNING
    )
    store.record_tick(T + 1, {"runs_created": 2})
    assert (
        store.set_supervisor_state(SupervisorState.HALTED, "ops", T + 2).state
        == SupervisorState.HALTED
    )
    got = store.get_supervisor()
    assert got is not None and (got.ticks, got.last_tick_at, got.reason) == (1, T + 1, "ops")
