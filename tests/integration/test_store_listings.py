"""The Teraslice listing windows of the store (jobs, executions, errors), over moto and
DynamoDB Local: merged from sharded indexes in a total order (ties by id), never a Scan."""

from __future__ import annotations

import uuid

from chalicelib.adapters.dynamodb.counting import counting
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Guard, Run, RunTransition, manual_slot
from chalicelib.domain.slices import Slice
from chalicelib.domain.transitions import ExStatus, SliceState
from chalicelib.ports import Sort

T = 1_800_000_000.0


def _job(created: float, updated: float) -> Job:
    return Job(
        job_id=str(uuid.uuid4()),
        definition={"name": "w", "operations": [{"_op": "noop"}]},
        created=created,
        updated=updated,
    )


def test_job_window_orders_merges_and_filters(store: DynamoStore) -> None:
    # 12 jobs over every shard, four to an instant; updates in the reverse order
    jobs = [_job(T + i // 4, T + 100 - i // 4) for i in range(12)]
    for job in jobs:
        store.create_job(job)
    by_created = sorted(jobs, key=lambda j: (j.created, j.job_id))
    by_updated = sorted(jobs, key=lambda j: (j.updated, j.job_id))
    with counting() as c:
        oldest = store.job_window(False, None, Sort("created", True), 0, 12)
    assert c.calls["Scan"] == 0 and c.calls["Query"] == store.settings.list_shards
    assert [j.job_id for j in oldest] == [j.job_id for j in by_created]
    newest = store.job_window(False, None, Sort("updated", False), 0, 12)
    assert [j.job_id for j in newest] == [j.job_id for j in by_updated[::-1]]
    pages = [store.job_window(False, None, Sort("created", True), f, 5) for f in (0, 5, 10)]
    assert [j.job_id for p in pages for j in p] == [j.job_id for j in by_created]

    assert store.set_job_active(jobs[0], False, T + 200)
    assert store.delete_job(jobs[1], T + 201)
    live = store.job_window(False, None, Sort("created", True), 0, 100)
    assert jobs[1].job_id not in {j.job_id for j in live} and len(live) == 11
    assert [j.job_id for j in store.job_window(True, None, Sort(), 0, 10)] == [jobs[1].job_id]
    inactive = store.job_window(False, False, Sort(), 0, 10)
    assert [j.job_id for j in inactive] == [jobs[0].job_id]
    assert len(store.job_window(False, True, Sort(), 0, 100)) == 10
    # a deleted job is never changed again, and takes no due slot
    assert not store.set_job_active(store.get_job(jobs[1].job_id) or jobs[1], True, T + 300)


def _run(job_id: str, created: float, status: ExStatus) -> Run:
    return Run(
        job_id=job_id,
        slot=manual_slot(created) + uuid.uuid4().hex[:6],
        ex_id=str(uuid.uuid4()),
        scheduled_start=created,
        config={"name": "w", "operations": [{"_op": "noop"}]},
        status=status,
        created=created,
        updated=created,
    )


def test_run_window_follows_status_changes_and_deletion(store: DynamoStore) -> None:
    job = _job(T, T)
    store.create_job(job)
    runs = [_run(job.job_id, T + i // 3, ExStatus.pending) for i in range(9)]
    for run in runs:
        assert store.create_run(run)
    pending = Guard(frozenset({ExStatus.pending}))
    done = store.apply_run(runs[0], RunTransition(pending, ExStatus.running, {"updated": T + 50}))
    assert done is not None
    every = [ExStatus.pending, ExStatus.running]
    listed = store.run_window(every, False, Sort("updated", False), 0, 20)
    assert listed[0].ex_id == runs[0].ex_id
    rest = sorted(runs[1:], key=lambda r: (r.updated, r.ex_id), reverse=True)
    assert [r.ex_id for r in listed[1:]] == [r.ex_id for r in rest]
    running = store.run_window([ExStatus.running], False, Sort(), 0, 20)
    assert [r.ex_id for r in running] == [runs[0].ex_id]
    assert len(store.run_window([ExStatus.pending], False, Sort(), 0, 20)) == 8
    # only terminal runs are marked deleted
    finished = store.apply_run(
        runs[1], RunTransition(pending, ExStatus.stopped, {"updated": T + 60})
    )
    assert finished is not None
    assert store.mark_runs_deleted(job.job_id) == 1
    assert store.mark_runs_deleted(job.job_id) == 0
    gone = store.run_window([ExStatus.stopped], True, Sort(), 0, 20)
    assert [(r.ex_id, r.deleted) for r in gone] == [(runs[1].ex_id, True)]
    assert store.run_window([ExStatus.stopped], False, Sort(), 0, 20) == []


def test_error_window_holds_slices_and_one_slice_runs_in_error(store: DynamoStore) -> None:
    job = _job(T, T)
    store.create_job(job)
    one = _run(job.job_id, T + 1, ExStatus.failed)
    one.has_errors, one.errors = True, [{"error": "boom"}]
    store.create_run(one)
    sliced = _run(job.job_id, T, ExStatus.running)
    sliced.slices_total = 2
    store.create_run(sliced)
    sliced_failed = _run(job.job_id, T, ExStatus.failed)
    sliced_failed.slices_total, sliced_failed.has_errors = 3, True
    store.create_run(sliced_failed)  # its errors are its slices: not listed as a run
    slices = [
        Slice(
            sliced.ex_id,
            f"00000{i}",
            i,
            {},
            state=SliceState.started,
            lease_token="tok",
            created=T,
            updated=T,
        )
        for i in range(2)
    ]
    store.put_slices(slices)
    assert store.finish_slice(slices[1], sliced, slices[1].fail("tok", T + 2, "bad"))
    found = store.error_window(Sort("updated", True), 0, 10)
    assert [(type(x).__name__, x.ex_id) for x in found] == [
        ("Run", one.ex_id),
        ("Slice", sliced.ex_id),
    ]
    by_created = store.error_window(Sort("created", False), 0, 10)
    assert [x.ex_id for x in by_created] == [one.ex_id, sliced.ex_id]
    assert [x.ex_id for x in store.error_window(Sort(), 1, 1)] == [one.ex_id]


def test_latest_run_that_ran_looks_past_any_number_of_ledger_records(store: DynamoStore) -> None:
    job = _job(T, T)
    store.create_job(job)
    assert store.latest_run_that_ran(job.job_id) is None
    ran = _run(job.job_id, T, ExStatus.completed)
    assert store.create_run(ran)
    # 120 newer slots that never ran: more than two of the filter's pages
    for i in range(120):
        ledger = _run(job.job_id, T + 60 * (i + 1), ExStatus.skipped)
        assert store.create_run(ledger)
    assert store.list_runs(job.job_id, limit=1)[0].status == ExStatus.skipped
    with counting() as c:
        found = store.latest_run_that_ran(job.job_id)
    assert found is not None and found.ex_id == ran.ex_id
    assert c.calls["Query"] == 3  # 50 + 50 + 21 slots evaluated, one query each
