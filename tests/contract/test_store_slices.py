"""The SliceStore contract: idempotent puts, leased claims, one count per slice."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TypedDict, Unpack

from chalicelib.domain.runs import Run
from chalicelib.domain.slices import Slice, SliceEnding, slice_id_for
from chalicelib.domain.transitions import ExStatus, SliceState
from chalicelib.ports import Store
from tests.contract.records import T, claimed_slice, make_slices, stored_run, write


class Finish(TypedDict, total=False):
    completed: bool
    expected_lease: float
    error: str


def _finish(store: Store, sl: Slice, run: Run, token: str | None, **kw: Unpack[Finish]) -> bool:
    ending = SliceEnding(
        kw.get("completed", True),
        T + 5,
        error=kw.get("error"),
        token=token,
        expected_lease=kw.get("expected_lease"),
    )
    return store.finish_slice(sl, run, ending)


def test_put_slices_is_idempotent_in_batches(store: Store) -> None:
    ex = "ex-1"
    assert store.put_slices(make_slices(ex, 60)) == 60
    assert store.put_slices(make_slices(ex, 60)) == 0
    assert store.put_slices(make_slices(ex, 61)) == 1
    assert [s.slice_id for s in store.list_slices(ex)] == [slice_id_for(i) for i in range(61)]
    assert store.list_slices("other") == [] and store.get_slice(ex, "999999") is None


def test_two_slice_claims_one_wins(racing_store: Store) -> None:
    racing_store.put_slices(make_slices("ex-2", 1))
    sid = slice_id_for(0)
    with ThreadPoolExecutor(8) as pool:
        got = list(
            pool.map(lambda t: racing_store.claim_slice("ex-2", sid, t, T, T + 30), "abcdefgh")
        )
    winners = [s for s in got if s is not None]
    assert len(winners) == 1 and winners[0].attempts == 1
    assert racing_store.claim_slice("ex-2", "missing", "z", T, T + 30) is None


def test_a_finished_slice_is_never_claimed_or_finished_again(store: Store) -> None:
    job, run, sl = claimed_slice(store)
    assert _finish(store, sl, run, "a", completed=False, error="x" * 5000)
    assert store.claim_slice(run.ex_id, sl.slice_id, "b", T + 100, T + 130) is None
    assert not _finish(store, sl, run, "a")
    got = store.get_slice(run.ex_id, sl.slice_id)
    assert got is not None and got.state == SliceState.error and got.error == "x" * 4000
    after = stored_run(store, job.job_id, run.slot)
    assert (after.failed, after.remaining, after.has_errors) == (1, 0, True)
    assert after.check_at == T + 5 + run.lease_seconds


def test_finishing_a_slice_of_an_ended_run_writes_nothing(store: Store) -> None:
    _, run, sl = claimed_slice(store)
    assert store.apply_run(run, write([ExStatus.running], ExStatus.stopped))
    assert not _finish(store, sl, run, "a")
    got = store.get_slice(run.ex_id, sl.slice_id)
    assert got is not None and got.state == SliceState.started  # the transaction failed whole


def test_the_sweep_finishes_a_slice_by_its_lease_and_counts_a_lost_worker(store: Store) -> None:
    job, run, sl = claimed_slice(store)
    assert not _finish(store, sl, run, None, expected_lease=T + 29, completed=False)
    assert _finish(store, sl, run, None, expected_lease=T + 30, completed=False, error="lost")
    after = stored_run(store, job.job_id, run.slot)
    assert (after.workers_lost, after.failed) == (1, 1)


def test_a_released_slice_is_pending_again_without_its_lease(store: Store) -> None:
    store.put_slices(make_slices("ex-3", 1))
    sl = store.claim_slice("ex-3", slice_id_for(0), "a", T, T + 30)
    assert sl is not None
    assert store.release_slice(sl, "a", T + 10, "boom", T + 1)
    assert not store.release_slice(sl, "a", T + 10, "boom", T + 1)  # no longer started
    got = store.get_slice("ex-3", sl.slice_id)
    assert got is not None
    assert (got.state, got.lease_token, got.not_before) == (SliceState.pending, None, T + 10)
    again = store.claim_slice("ex-3", sl.slice_id, "b", T + 2, T + 32)
    assert again is not None and again.attempts == 2 and again.not_before is None


def test_a_waiting_slice_is_pending_with_its_wait_and_its_attempt_given_back(
    store: Store,
) -> None:
    store.put_slices(make_slices("ex-w", 1))
    sl = store.claim_slice("ex-w", slice_id_for(0), "a", T, T + 30)
    assert sl is not None and sl.attempts == 1
    wait = {"kind": "stepfunctions", "executionArn": "arn:x", "since": T}
    assert not store.wait_slice(sl, "b", T + 60, wait, T + 1)  # not its lease
    assert store.wait_slice(sl, "a", T + 60, wait, T + 1)
    assert not store.wait_slice(sl, "a", T + 60, wait, T + 1)  # no longer started
    got = store.get_slice("ex-w", sl.slice_id)
    assert got is not None
    assert (got.state, got.lease_token, got.not_before) == (SliceState.pending, None, T + 60)
    assert (got.wait, got.attempts) == (wait, 0)
    check = store.claim_slice("ex-w", sl.slice_id, "c", T + 60, T + 90)
    assert check is not None and check.attempts == 1 and check.wait == wait
