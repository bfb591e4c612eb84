"""The read side's contract: listings and history, ordered, windowed and paged by tokens
that belong to one listing (anything else is InvalidInput naming `next`)."""

from __future__ import annotations

from collections.abc import Callable
from unittest.mock import ANY

import pytest

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.jobs import Job
from chalicelib.domain.slices import slice_id_for
from chalicelib.domain.transitions import ExStatus, JobState
from chalicelib.ports import Page, Sort, Store
from tests.contract.records import T, claimed_slice, make_job, make_run, write


def _jobs(store: Store, n: int, owner: str = "alice") -> list[Job]:
    jobs = [make_job(created=T + i, owner=owner) for i in range(n)]
    for j in jobs:
        store.create_job(j)
    return jobs


def _bad_token(fn: Callable[[], object]) -> None:
    with pytest.raises(InvalidInput) as err:
        fn()
    assert err.value.details["errors"] == [{"field": "next", "reason": ANY}]


def test_list_jobs_pages_newest_first_with_tokens(store: Store) -> None:
    jobs = _jobs(store, 5)
    seen: list[str] = []
    cursor = None
    for _ in range(3):
        page, cursor = store.list_jobs(Page(2, cursor))
        seen += [j.job_id for j in page]
        if cursor is None:
            break
    assert seen == [j.job_id for j in reversed(jobs)] and cursor is None
    oldest, _ = store.list_jobs(Page(1, newest_first=False))
    assert oldest[0].job_id == jobs[0].job_id
    assert store.list_jobs(Page(5))[1] is None  # no token to an empty page
    _bad_token(lambda: store.list_jobs(Page(cursor="garbage")))


def test_listings_leave_out_deleted_jobs_and_filter_by_state_and_owner(store: Store) -> None:
    mine, theirs = _jobs(store, 3), _jobs(store, 2, owner="bob")
    assert store.delete_job(mine[0], T + 10)
    suspended = make_job(JobState.SUSPENDED, owner="alice", created=T + 20)
    store.create_job(suspended)
    listed, _ = store.list_jobs()
    assert {j.job_id for j in listed} == {j.job_id for j in [*mine[1:], *theirs, suspended]}
    alice, _ = store.jobs_by_owner("alice")
    assert [j.job_id for j in alice] == [suspended.job_id, mine[2].job_id, mine[1].job_id]
    only, _ = store.jobs_by_owner("alice", state=JobState.SUSPENDED)
    assert [j.job_id for j in only] == [suspended.job_id]
    _, token = store.jobs_by_owner("alice", Page(1))
    assert token is not None
    _bad_token(lambda: store.jobs_by_owner("bob", Page(cursor=token)))  # another listing's token
    _bad_token(lambda: store.list_jobs(Page(cursor=token)))


def test_job_window_sorts_by_field_then_id_and_splits_deleted(store: Store) -> None:
    jobs = _jobs(store, 4)
    assert store.delete_job(jobs[1], T + 100)
    assert store.set_job_active(jobs[2], False, T + 50)
    live = store.job_window(False, None, Sort("created", True), 0, 10)
    assert [j.job_id for j in live] == [jobs[0].job_id, jobs[2].job_id, jobs[3].job_id]
    by_update = store.job_window(False, None, Sort("updated", False), 0, 2)
    assert by_update[0].job_id == jobs[2].job_id
    assert [j.job_id for j in store.job_window(True, None, Sort(), 0, 10)] == [jobs[1].job_id]
    inactive = store.job_window(False, False, Sort(), 0, 10)
    assert [j.job_id for j in inactive] == [jobs[2].job_id]
    assert len(store.job_window(False, True, Sort(), 0, 10)) == 2
    assert store.job_window(False, None, Sort("created", True), 1, 1)[0].job_id == jobs[2].job_id
    assert store.job_window(False, None, Sort(), 0, 0) == []


def test_run_window_by_status_and_deletion(store: Store) -> None:
    job = make_job()
    runs = [make_run(job, T + 60 * i) for i in range(3)]
    runs[1].status = ExStatus.completed
    for r in runs:
        store.create_run(r)
    pending = store.run_window([ExStatus.pending], False, Sort("created", True), 0, 10)
    assert [r.ex_id for r in pending] == [runs[0].ex_id, runs[2].ex_id]
    both = store.run_window([ExStatus.pending, ExStatus.completed], False, Sort(), 0, 10)
    assert [r.ex_id for r in both] == [r.ex_id for r in reversed(runs)]
    store.mark_runs_deleted(job.job_id)
    gone = store.run_window([ExStatus.completed], True, Sort(), 0, 10)
    assert [r.ex_id for r in gone] == [runs[1].ex_id]
    assert store.run_window([ExStatus.completed], False, Sort(), 0, 10) == []


def test_error_window_merges_failed_slices_and_one_slice_runs(store: Store) -> None:
    job, sliced, sl = claimed_slice(store)
    store.finish_slice(sl, sliced, sl.fail("a", T + 1, "bad"))
    inline = make_run(job, T + 60, status=ExStatus.running, inline=True, updated=T + 2)
    store.create_run(inline)
    failed = store.apply_run(
        inline,
        write([ExStatus.running], ExStatus.failed, {"has_errors": True, "updated": T + 2}),
    )
    assert failed is not None
    found = store.error_window(Sort("updated", True), 0, 10)
    assert [getattr(x, "slice_id", x.ex_id) for x in found] == [slice_id_for(0), inline.ex_id]
    assert len(store.error_window(Sort(), 1, 10)) == 1


def test_windows_of_one_owner(store: Store) -> None:
    """An owner's window: only the jobs, runs and errors of that owner's jobs (a run's owner
    is in its copy of the definition; a slice's, in its run's)."""
    alices, bobs = _jobs(store, 2), _jobs(store, 1, owner="bob")
    bob = bobs[0]
    assert [j.job_id for j in store.job_window(False, None, Sort(), 0, 10, owner="bob")] == [
        bob.job_id
    ]
    assert len(store.job_window(False, True, Sort(), 0, 10, owner="alice")) == 2
    assert store.job_window(False, None, Sort(), 0, 10, owner="carol") == []
    mine = make_run(alices[0], T)
    theirs = make_run(bob, T + 60, config=bob.definition)
    for r in (mine, theirs):
        store.create_run(r)
    pending = [ExStatus.pending]
    assert [r.ex_id for r in store.run_window(pending, False, Sort(), 0, 10, owner="bob")] == [
        theirs.ex_id
    ]
    assert len(store.run_window(pending, False, Sort(), 0, 10)) == 2
    _, sliced, sl = claimed_slice(store)  # alice's
    store.finish_slice(sl, sliced, sl.fail("a", T + 1, "bad"))
    inline = make_run(
        bob, T + 120, status=ExStatus.running, inline=True, updated=T + 2, config=bob.definition
    )
    store.create_run(inline)
    failed = store.apply_run(
        inline,
        write([ExStatus.running], ExStatus.failed, {"has_errors": True, "updated": T + 2}),
    )
    assert failed is not None

    def errors(owner: str | None) -> list[str]:
        found = store.error_window(Sort("updated", True), 0, 10, owner=owner)
        return [getattr(x, "slice_id", x.ex_id) for x in found]

    assert errors("alice") == [slice_id_for(0)]
    assert errors("bob") == [inline.ex_id]
    assert errors("carol") == []
    assert errors(None) == [slice_id_for(0), inline.ex_id]


def test_history_pages_by_creation_with_ties_kept_and_tokens_checked(store: Store) -> None:
    job = make_job()
    runs = [make_run(job, T + 60 * i) for i in range(5)]
    for r in runs:
        r.created = T  # one tick's ledger: all at the same instant
        store.create_run(r)
    seen, cursor = [], None
    while True:
        page, cursor = store.runs_created_between(job.job_id, None, None, page=Page(2, cursor))
        seen += [r.slot for r in page]
        if cursor is None:
            break
    assert sorted(seen) == sorted(r.slot for r in runs) and len(seen) == 5
    _, token = store.runs_created_between(job.job_id, T, T, page=Page(1))
    assert token is not None
    _bad_token(lambda: store.runs_created_between("other", None, None, page=Page(cursor=token)))
    _bad_token(lambda: store.runs_created_between(job.job_id, T + 1, None, page=Page(cursor=token)))
    assert store.runs_created_between(job.job_id, T + 1, T) == ([], None)
    assert store.runs_created_between(job.job_id, None, None, statuses=[]) == ([], None)


def test_history_filters_statuses_and_counts(store: Store) -> None:
    job = make_job()
    statuses = [ExStatus.completed, ExStatus.skipped, ExStatus.completed, ExStatus.failed]
    for i, status in enumerate(statuses):
        store.create_run(make_run(job, T + 60 * i, status=status))
    done, token = store.runs_created_between(
        job.job_id, T, None, statuses=[ExStatus.completed], page=Page(1, newest_first=False)
    )
    assert [r.created for r in done] == [T] and token is not None
    rest, token = store.runs_created_between(
        job.job_id, T, None, statuses=[ExStatus.completed], page=Page(1, token, newest_first=False)
    )
    assert [r.created for r in rest] == [T + 120] and token is None
    counts = store.count_runs_by_status(job.job_id, None, T + 120)
    assert counts == {ExStatus.completed: 2, ExStatus.skipped: 1}
    assert store.count_runs_by_status(job.job_id, T + 1, T) == {}
