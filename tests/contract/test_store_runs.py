"""The RunStore contract: one run per slot, slots held and freed, conditional transitions."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.domain.runs import Guard, Run, RunTransition
from chalicelib.domain.transitions import ExStatus, JobState
from chalicelib.ports import SlotWrite, Store
from tests.contract.records import T, make_job, make_run, running, stored_job, stored_run, write

CLAIM_SETS = {"lease_token": "x", "lease_expires_at": T + 30}
CLAIM = write([ExStatus.pending], ExStatus.running, CLAIM_SETS)
UNREAD_CLAIM = write([ExStatus.pending], ExStatus.running, CLAIM_SETS, unread=True)


def test_a_created_run_holds_nothing_and_takes_a_slot_with_its_claim(store: Store) -> None:
    job = make_job()
    store.create_job(job)
    first, second = make_run(job, T), make_run(job, T + 60)
    assert store.create_slots([SlotWrite([first, second], job, T + 120, False)])
    job = stored_job(store, job.job_id)
    assert job.active_slots == set() and (job.version, job.next_fire_at) == (1, T + 120)
    entered = store.apply_run(first, CLAIM.taking_slot(1))
    assert entered is not None and entered.holds_slot and entered.status == ExStatus.running
    assert stored_job(store, job.job_id).active_slots == {first.slot}
    assert store.apply_run(second, CLAIM.taking_slot(1)) is None  # the job is full
    refused = stored_run(store, job.job_id, second.slot)
    assert refused.status == ExStatus.pending and not refused.holds_slot
    assert store.apply_run(second, CLAIM.taking_slot(2)) is not None  # a limit of two
    assert stored_job(store, job.job_id).active_slots == {first.slot, second.slot}
    assert not store.create_run(make_run(job, T + 61), limit=2)


def test_a_claim_that_fails_takes_no_slot(store: Store) -> None:
    job = make_job()
    store.create_job(job)
    run = make_run(job, T)
    assert store.create_slots([SlotWrite([run], job, T + 60, False)])
    assert store.apply_run(run, write([ExStatus.pending], ExStatus.stopped)) is not None
    assert store.apply_run(run, CLAIM.taking_slot(1)) is None
    assert stored_job(store, job.job_id).active_slots == set()


def test_one_buffered_run_per_job_then_acquired_when_a_slot_frees(store: Store) -> None:
    job = make_job()
    store.create_job(job)
    active, buffered, third = make_run(job, T), make_run(job, T + 60), make_run(job, T + 120)
    assert store.create_slots([SlotWrite([active, buffered, third], job, T + 180, False)])
    active = stored_run(store, job.job_id, active.slot)
    entered = store.apply_run(active, CLAIM.taking_slot(1))
    assert entered is not None
    assert store.wait_for_slot(buffered, T + 100)
    got = stored_run(store, job.job_id, buffered.slot)
    assert got.buffered and not got.holds_slot and got.check_at == T + 100
    assert stored_job(store, job.job_id).buffered_slot == buffered.slot
    assert not store.wait_for_slot(third, T + 100)  # one buffered run at most
    assert not store.acquire_buffered(got, limit=1)  # no free slot yet
    done = store.apply_run(entered, write([ExStatus.running], ExStatus.stopped))
    assert done is not None and not done.holds_slot
    assert store.acquire_buffered(got, limit=1)
    assert not store.acquire_buffered(got, limit=1)  # once
    job = stored_job(store, job.job_id)
    assert job.active_slots == {buffered.slot} and job.buffered_slot is None
    got = stored_run(store, job.job_id, buffered.slot)
    assert got.holds_slot and not got.buffered


def test_catch_up_runs_wait_in_a_set_behind_the_buffered_run(store: Store) -> None:
    job = make_job()
    store.create_job(job)
    holder, late1, late2 = make_run(job, T), make_run(job, T + 60), make_run(job, T + 120)
    late1.catchup = late2.catchup = True
    on_time = make_run(job, T + 180)
    assert store.create_slots([SlotWrite([holder, late1, late2, on_time], job, T + 240, False)])
    entered = store.apply_run(holder, CLAIM.taking_slot(1))
    assert entered is not None
    assert store.wait_for_slot(late1, T + 100) and store.wait_for_slot(late2, T + 100)
    assert store.wait_for_slot(on_time, T + 100)
    job = stored_job(store, job.job_id)
    assert job.waiting_slots == {late1.slot, late2.slot} and job.buffered_slot == on_time.slot
    assert store.apply_run(entered, write([ExStatus.running], ExStatus.completed)) is not None
    waiting = stored_run(store, job.job_id, late1.slot)
    assert not store.acquire_buffered(waiting, limit=1)  # the buffered on-time run goes first
    assert store.acquire_buffered(stored_run(store, job.job_id, on_time.slot), limit=1)
    job = stored_job(store, job.job_id)
    assert job.active_slots == {on_time.slot} and job.buffered_slot is None
    store.release_slots(job.job_id, [on_time.slot])
    assert store.acquire_buffered(waiting, limit=1)
    job = stored_job(store, job.job_id)
    assert job.active_slots == {late1.slot} and job.waiting_slots == {late2.slot}


def test_missed_slots_noted_with_the_runs_are_recorded_after_them(store: Store) -> None:
    job = make_job()
    store.create_job(job)
    run = make_run(job, T + 300)
    missed = [make_run(job, T + 60 * i, status=ExStatus.missed, reason="misfire") for i in range(3)]
    noted = [(m.scheduled_start, "misfire") for m in missed]
    assert store.create_slots([SlotWrite([run], job, T + 360, False, noted)])
    job = stored_job(store, job.job_id)
    assert job.unrecorded == noted and (job.version, job.next_fire_at) == (1, T + 360)
    left = noted[2:]
    assert store.create_slots([SlotWrite(missed[:2], job, T + 360, False, left, ledger=True)])
    job = stored_job(store, job.job_id)
    assert job.unrecorded == left and (job.version, job.next_fire_at) == (1, T + 360)
    # a racing tick's copy of the same missed records: harmless
    assert store.create_slots([SlotWrite(missed, job, T + 360, False, [], ledger=True)])
    job = stored_job(store, job.job_id)
    assert job.unrecorded == [] and job.version == 1 and job.state == JobState.SCHEDULED
    assert [stored_run(store, job.job_id, m.slot).status for m in missed] == [ExStatus.missed] * 3
    over_a_run = make_run(job, T + 300, status=ExStatus.missed)  # never over a real run
    assert not store.create_slots([SlotWrite([over_a_run], job, T + 360, False, [], ledger=True)])
    assert stored_run(store, job.job_id, run.slot).status == ExStatus.pending
    stale = make_job()
    stale.job_id, stale.version = job.job_id, 0  # the job changed since: left for later
    late = make_run(job, T + 420, status=ExStatus.missed)
    assert not store.create_slots([SlotWrite([late], stale, T + 360, False, [], ledger=True)])
    assert store.get_run(job.job_id, late.slot) is None


def test_slots_and_the_advance_are_written_together(store: Store) -> None:
    job = make_job()
    store.create_job(job)
    records = [make_run(job, T + 60 * i, status=ExStatus.missed) for i in range(2)]
    records.append(make_run(job, T + 120))
    assert store.create_slots([SlotWrite(records, job, T + 180, False)])
    assert not store.create_slots([SlotWrite(records, job, T + 180, False)])  # stale version
    job = stored_job(store, job.job_id)
    assert (job.version, job.next_fire_at) == (1, T + 180)
    again = [make_run(job, T), make_run(job, T + 240, status=ExStatus.missed)]
    assert not store.create_slots([SlotWrite(again, job, T + 300, False)])  # one exists: none
    assert store.get_run(job.job_id, again[1].slot) is None
    assert stored_job(store, job.job_id).version == 1
    with pytest.raises(ValueError):
        store.create_slots([SlotWrite([], job, None, True)])
    with pytest.raises(ValueError):
        store.create_slots(
            [SlotWrite([make_run(job, T + 600 + i) for i in range(100)], job, None, True)]
        )
    with pytest.raises(ValueError):
        store.create_slots([SlotWrite([again[1]], job, None, True)] * 2)  # one write per job
    assert store.create_slots([SlotWrite([again[1]], job, None, True)])
    assert stored_job(store, job.job_id).state == JobState.EXPIRED


def test_two_claims_one_wins(racing_store: Store) -> None:
    job = make_job()
    run = make_run(job)
    racing_store.create_run(run)

    def claim(token: str) -> Run | None:
        claim = RunTransition(
            Guard(frozenset({ExStatus.pending}), lease_expired_before=T),
            ExStatus.running,
            {"lease_token": token},
            {"attempts": 1},
        )
        return racing_store.apply_run(run, claim)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(claim, [f"w{i}" for i in range(8)]))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    got = stored_run(racing_store, job.job_id, run.slot)
    assert got.attempts == 1 and got.lease_token == winners[0].lease_token


def test_a_terminal_transition_frees_the_slot_it_holds_once(store: Store) -> None:
    job = make_job()
    store.create_job(job)
    run = make_run(job)
    assert store.create_run(run, limit=2)
    claimed = store.apply_run(run, CLAIM)
    assert claimed is not None and claimed.holds_slot
    done = store.apply_run(
        claimed,
        write([ExStatus.running], ExStatus.completed, {"finished_at": T + 5}, lease_token="x"),
    )
    assert done is not None and done.status == ExStatus.completed
    assert (done.holds_slot, done.lease_token, done.check_at) == (False, None, None)
    assert stored_job(store, job.job_id).active_slots == set()
    stored = stored_run(store, job.job_id, run.slot)
    assert not stored.holds_slot and stored.tally_pending
    assert store.apply_run(claimed, write([ExStatus.running], ExStatus.failed)) is None


def test_a_stale_view_loses_every_guard(store: Store) -> None:
    job = make_job()
    run = running(job, slices=2, lease_token="a", lease_expires_at=T + 30, queued_cursor=2)
    store.create_run(run)
    touch = {"updated": T + 1}
    live = [ExStatus.running]
    assert store.apply_run(run, write(live, None, touch, lease_token="b")) is None
    assert store.apply_run(run, write(live, None, touch, lease_expired_before=T + 30)) is None
    assert store.apply_run(run, write(live, None, touch, check_at=T + 99)) is None
    assert store.apply_run(run, write(live, None, touch, remaining_zero=True)) is None
    assert store.apply_run(run, write(live, None, touch, cursor_below_total=True)) is None
    assert store.apply_run(run, write([ExStatus.pending], None, touch)) is None
    other = make_run(job, slot_ts=T)
    other.ex_id = "another-execution"
    assert store.apply_run(other, write(live, None, touch, unread=True)) is None
    assert stored_run(store, job.job_id, run.slot).updated == T
    guards: dict[str, Any] = {"lease_token": "a", "check_at": T + 30, "unread": True}
    ok = store.apply_run(run, write(live, None, touch, **guards))
    assert ok is not None and ok.updated == T + 1


def test_unread_claims_skip_buffered_and_presliced_runs(store: Store) -> None:
    job = make_job()
    buffered, presliced = make_run(job, T, buffered=True), make_run(job, T + 60, presliced=True)
    for r in (buffered, presliced):
        store.create_run(r)
        assert store.apply_run(r, UNREAD_CLAIM) is None
        assert store.apply_run(r, CLAIM) is not None


def test_statuses_outside_the_table_are_dropped_from_the_condition(store: Store) -> None:
    job = make_job()
    run = make_run(job, status=ExStatus.stopping)
    store.create_run(run)
    # stopping -> running is not an arrow: even naming stopping as a source, nothing changes
    assert store.apply_run(run, write([ExStatus.stopping], ExStatus.running)) is None
    assert store.apply_run(run, write([], ExStatus.running)) is None
    stopped = store.apply_run(run, write([ExStatus.stopping], ExStatus.stopped))
    assert stopped is not None and stopped.status == ExStatus.stopped


def test_sets_removes_and_adds(store: Store) -> None:
    job = make_job()
    run = running(job, slices=3, reason="r", result={"a": 1})
    store.create_run(run)
    change = RunTransition(
        Guard(frozenset({ExStatus.running})),
        sets={"reason": None, "workers": 4, "result": None},
        adds={"processed": 2},
    )
    got = store.apply_run(run, change)
    assert got is not None
    assert (got.reason, got.result, got.workers, got.processed) == (None, None, 4, 2)
    assert stored_run(store, job.job_id, run.slot) == got


def test_runs_by_ex_id_and_in_slot_order(store: Store) -> None:
    job = make_job()
    runs = [make_run(job, T + 60 * i) for i in (2, 0, 1)]
    for r in runs:
        store.create_run(r)
    assert [r.slot for r in store.list_runs(job.job_id)] == sorted(
        (r.slot for r in runs), reverse=True
    )
    assert [r.slot for r in store.list_runs(job.job_id, limit=2, newest_first=False)] == sorted(
        r.slot for r in runs
    )[:2]
    found = store.get_run_by_ex(runs[1].ex_id)
    assert found is not None and found.slot == runs[1].slot


def test_latest_run_that_ran_skips_any_number_of_ledger_records(store: Store) -> None:
    job = make_job()
    assert store.latest_run_that_ran(job.job_id) is None
    ran = make_run(job, T, status=ExStatus.completed)
    store.create_run(ran)
    for i in range(1, 60):
        store.create_run(make_run(job, T + 60 * i, status=ExStatus.skipped))
    got = store.latest_run_that_ran(job.job_id)
    assert got is not None and got.slot == ran.slot


def test_live_runs_and_stalled_runs_follow_check_at(store: Store, settings: Settings) -> None:
    job = make_job()
    early, late = make_run(job, T), make_run(job, T + 600)
    done = make_run(job, T + 60, status=ExStatus.completed)
    for r in (early, late, done):
        store.create_run(r)
    assert {r.ex_id for r in store.live_runs()} == {early.ex_id, late.ex_id}
    assert len(store.live_runs(limit=1)) == 1
    stalled = [r for s in range(settings.lease_shards) for r in store.stalled_runs(s, T + 31)]
    assert [r.ex_id for r in stalled] == [early.ex_id]
    store.apply_run(early, write([ExStatus.pending], None, {"check_at": T + 900}))
    assert all(store.stalled_runs(s, T + 31) == [] for s in range(settings.lease_shards))


def test_several_jobs_slots_are_written_together_or_not_at_all(store: Store) -> None:
    jobs = [make_job() for _ in range(3)]
    for job in jobs:
        store.create_job(job)
    writes = [SlotWrite([make_run(j, T), make_run(j, T + 60)], j, T + 120, False) for j in jobs]
    stale = make_job()
    stale.job_id = jobs[0].job_id
    stale.version = 7  # another supervisor's view
    spoiled = [SlotWrite([make_run(stale, T)], stale, T + 60, False), *writes[1:]]
    assert not store.create_slots(spoiled)
    assert all(store.list_runs(j.job_id) == [] for j in jobs)  # nothing written
    assert store.create_slots(writes)
    for job in jobs:
        assert len(store.list_runs(job.job_id)) == 2
        assert stored_job(store, job.job_id).next_fire_at == T + 120


def test_an_ended_run_with_events_due_stays_stalled_until_they_are_cleared(
    store: Store, settings: Settings
) -> None:
    """A supervisor's terminal write that marks events due (`Run.notify_due`) keeps the run
    on the sweep, due at once, but not among the live runs; clearing the mark takes it off,
    once, and only for the same execution."""
    job = make_job()
    store.create_job(job)
    run = make_run(job)
    assert store.create_run(run, limit=2)
    due = {"timed_out": {"reason": "timed out"}, "failed": {}}
    ended = store.apply_run(run, run.time_out(T + 100, "no progress", due))
    assert ended is not None and ended.status == ExStatus.failed
    assert (ended.notify_due, ended.check_at, ended.holds_slot) == (due, T + 100, False)
    stored = stored_run(store, job.job_id, run.slot)
    assert stored.notify_due == due and stored.tally_pending
    stalled = [r for s in range(settings.lease_shards) for r in store.stalled_runs(s, T + 101)]
    assert [r.notify_due for r in stalled] == [due]
    assert store.live_runs() == []
    other = make_run(job, status=ExStatus.failed)  # same slot, another execution
    assert not store.clear_notify_due(other)
    assert store.clear_notify_due(ended)
    assert not store.clear_notify_due(ended)
    stored = stored_run(store, job.job_id, run.slot)
    assert (stored.notify_due, stored.check_at) == (None, None)
    assert all(store.stalled_runs(s, T + 101) == [] for s in range(settings.lease_shards))


def test_a_refused_group_names_the_writes_whose_conditions_failed(store: Store) -> None:
    jobs = [make_job() for _ in range(4)]
    for job in jobs:
        store.create_job(job)
    writes = [SlotWrite([make_run(j, T), make_run(j, T + 60)], j, T + 120, False) for j in jobs]
    assert store.create_slots_refused(writes[1:2]) is None  # another supervisor wrote job 1
    stale = make_job()
    stale.job_id = jobs[3].job_id
    stale.version = 7  # job 3 changed since this tick read it
    again = [*writes[:3], SlotWrite([make_run(stale, T)], stale, T + 60, False)]
    assert store.create_slots_refused(again) == frozenset({1, 3})
    assert all(store.list_runs(j.job_id) == [] for j in (jobs[0], jobs[2], jobs[3]))
    assert store.create_slots_refused([writes[0], writes[2]]) is None  # the others, together
    assert all(len(store.list_runs(j.job_id)) == 2 for j in jobs[:3])
