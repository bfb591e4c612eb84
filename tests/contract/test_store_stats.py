"""The StatsStore and RepairStore contracts: ended runs counted exactly once; repairs
all or nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.domain.cluster import ClusterTotals
from chalicelib.domain.errors import Conflict
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Run
from chalicelib.domain.slices import slice_id_for
from chalicelib.domain.transitions import ExStatus, SliceState
from chalicelib.ports import Store
from tests.contract.records import (
    T,
    make_job,
    make_run,
    make_slices,
    running,
    stored_job,
    stored_run,
    write,
)


def _ended(store: Store, n: int, job: Job | None = None) -> list[Run]:
    """`n` runs of one job, started at T, ended at T + 10 (2 processed, 1 failed)."""
    job = job or make_job()
    out = []
    for i in range(n):
        run = running(job, started_at=T, processed=2, failed=1)
        run.slot = make_run(job, T + 60 * i).slot
        store.create_run(run)
        done = store.apply_run(
            run, write([ExStatus.running], ExStatus.completed, {"finished_at": T + 10})
        )
        assert done is not None
        out.append(done)
    return out


EACH = ClusterTotals(runs=1, processed=2, failed=1, job_duration=10, workers_joined=1)


def test_ended_runs_are_counted_whether_folded_or_not(store: Store) -> None:
    assert store.cluster_totals() == ClusterTotals()
    _ended(store, 5)
    five = sum([EACH] * 5, ClusterTotals())
    assert store.cluster_totals() == five
    assert store.fold_tallies(T, limit=2) == 2
    assert store.cluster_totals() == five
    assert store.fold_tallies(T) == 3
    assert store.fold_tallies(T) == 0
    assert store.cluster_totals() == five


def test_concurrent_folds_count_each_run_once(racing_store: Store) -> None:
    _ended(racing_store, 6)
    with ThreadPoolExecutor(3) as pool:
        folded = sum(pool.map(lambda _: racing_store.fold_tallies(T), range(3)))
    assert folded == 6
    assert racing_store.cluster_totals() == sum([EACH] * 6, ClusterTotals())


def test_resolve_completes_the_run_its_open_slices_and_frees_its_slot(store: Store) -> None:
    job = make_job()
    store.create_job(job)
    run = make_run(job, status=ExStatus.running, slices_total=3, remaining=3, failed=1)
    assert store.create_run(run, limit=1)
    store.put_slices(make_slices(run.ex_id, 3))
    slices = store.list_slices(run.ex_id)
    stale = make_run(job)
    stale.slot = run.slot  # another execution of the slot: the run changed meanwhile
    assert not store.resolve_complete(stale, slices, T + 5)
    assert store.resolve_complete(run, slices, T + 5)
    got = stored_run(store, job.job_id, run.slot)
    assert (got.status, got.processed, got.remaining, got.holds_slot) == (
        ExStatus.completed,
        2,
        0,
        False,
    )
    assert got.check_at is None and got.tally_pending
    assert {s.state for s in store.list_slices(run.ex_id)} == {SliceState.completed}
    assert stored_job(store, job.job_id).active_slots == set()
    assert not store.resolve_complete(run, [], T + 6)  # ended: once
    with pytest.raises(Conflict):
        store.resolve_complete(run, make_slices(run.ex_id, 99), T + 6)


def test_reset_replaces_the_execution_and_keeps_its_figures(store: Store) -> None:
    job = make_job()
    store.create_job(job)
    (ended,) = _ended(store, 1, job)
    store.put_slices(make_slices(ended.ex_id, 2))
    fresh = make_run(job)
    fresh.slot = ended.slot
    stale = Run(**{**ended.__dict__, "tally_pending": False})
    assert not store.reset_run(stale, fresh, [], limit=1)  # its tally mark changed
    assert store.reset_run(ended, fresh, store.list_slices(ended.ex_id), limit=1)
    got = stored_run(store, job.job_id, ended.slot)
    assert got.ex_id == fresh.ex_id and got.status == ExStatus.pending and got.holds_slot
    assert store.list_slices(ended.ex_id) == []
    assert stored_job(store, job.job_id).active_slots == {ended.slot}
    assert store.cluster_totals() == EACH  # counted as it was replaced
    assert not store.reset_run(ended, make_run(job), [], limit=1)  # once
    assert store.get_slice(ended.ex_id, slice_id_for(0)) is None
