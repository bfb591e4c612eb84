"""DynamoDB call budgets: counted, so stable across machines."""

from __future__ import annotations

import copy
from typing import NamedTuple

import pytest

from chalicelib.adapters.dynamodb.counting import counting
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container, build_container
from chalicelib.domain.runs import Guard, RunTransition
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import FakeClock, StartMessage, start_messages
from chalicelib.services.entry import PreparedStart
from chalicelib.services.supervisor.firing import Firer
from chalicelib.services.supervisor.stats import TickStats
from tests.conftest import T0, drain
from tests.conftest import test_settings as settings_with

NOOP = {"name": "b", "operations": [{"_op": "noop"}, {"_op": "noop"}]}


class Budget(NamedTuple):
    """DynamoDB calls and items per run, beyond those of a tick that creates nothing; the
    creating tick writes every job's run in one transaction (up to 100 items)."""

    transactions: int
    updates: int
    reads: int
    items: int


@pytest.mark.parametrize(
    "overlap, ahead, budget",
    [
        # allow: created (in the tick's one transaction: the run and its job's advance),
        # claimed, finished; the start message's hint lets the worker claim the run without
        # reading it (the claim's update returns the run)
        ("allow", True, Budget(transactions=0, updates=2, reads=0, items=4)),
        ("allow", False, Budget(transactions=0, updates=2, reads=0, items=4)),
        # skip, its start message ahead of its second (as the tick sends it): claimed with
        # its job's active slot in one transaction, from the hint's config and args, with
        # no read; the finishing transaction frees the slot, and the run it wrote is built
        ("skip", True, Budget(transactions=2, updates=0, reads=0, items=6)),
        # skip, the start message at or after its second (late, re-sent): the run is read
        # first, as a late start is judged against its job's slots
        ("skip", False, Budget(transactions=2, updates=0, reads=1, items=6)),
    ],
)
def test_single_slice_scheduled_run_costs(
    container: Container,
    queue: MemoryQueue,
    clock: FakeClock,
    overlap: str,
    ahead: bool,
    budget: Budget,
) -> None:
    transactions, updates, reads, items = budget
    n = 5
    for _ in range(n):
        container.jobs.submit(
            {**NOOP, "overlap": overlap, "schedule": {"rate": "rate(1 minute)"}}, start=True
        )
    container.supervisor.tick(T0)  # creates the supervisor record
    with counting() as tick_only:
        container.supervisor.tick(T0 + 1)
    now = T0 + 57 if ahead else T0 + 60  # the run's second is T0 + 60
    clock.t = now
    with counting() as c:
        stats = container.supervisor.tick(now)
        if ahead:  # as the start batch handler does: every claim first, then the runs
            starts = [StartMessage.from_body(m.body) for m in queue.take()]
            prepared = [
                container.worker.prepare_start(m.job_id, m.slot, None, m.hint, m.delivery)
                for m in starts
            ]
            for p in prepared:
                assert isinstance(p, PreparedStart) and p.enter is None  # claimed ahead
                container.worker.run_prepared(p)
        drain(container, queue)
    assert stats.runs_created == n
    assert c.calls["TransactWriteItems"] == 1 + transactions * n  # 1: the tick's creation
    assert c.calls["UpdateItem"] - tick_only.calls["UpdateItem"] == updates * n
    assert c.calls["GetItem"] - tick_only.calls["GetItem"] == reads * n
    assert c.items_written - tick_only.items_written == items * n


def test_a_bursts_runs_are_claimed_a_group_to_a_transaction(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    n = 30  # due on one second: a burst, whose starts go in groups of 25 runs
    for i in range(n):
        container.jobs.submit(
            {**NOOP, "name": f"b{i}", "schedule": {"at": "2027-01-15T08:01:00Z"}}, start=True
        )
    container.supervisor.tick(T0 + 55)
    groups = queue.take()
    assert len(groups) == 2
    clock.t = T0 + 58
    with counting() as c:
        prepared = [
            p for g in groups for p in container.worker.prepare_group(start_messages(g.body))
        ]
    assert all(isinstance(p, PreparedStart) and p.run.holds_slot for p in prepared)
    assert len(prepared) == n
    assert c.calls == {"TransactWriteItems": 2}  # no read; runs and jobs: 50 and 10 items
    assert c.items_written == 2 * n


def test_a_burst_handed_off_reads_each_group_once_and_claims_nothing_again(
    clock: FakeClock, queue: MemoryQueue, aws: None
) -> None:
    """A burst claimed further ahead than a start function waits: one transaction a group
    to claim, as above; the hand-off's group is read in one BatchGetItem (a strongly
    consistent read a run), with no write before the runs' finishes."""
    settings = settings_with(lookahead_seconds=60.0, claim_rate=5.0)  # 30 runs: 14 s ahead
    store = DynamoStore(settings)
    store.ensure_tables()
    c = build_container(settings, store=store, queue=queue, clock=clock)
    at = "2027-01-15T08:01:00Z"
    for i in range(30):
        c.jobs.submit({**NOOP, "name": f"h{i}", "schedule": {"at": at}}, start=True)
    c.supervisor.tick(T0 + 30)
    groups = queue.take()
    clock.t = T0 + 46
    with counting() as claims:
        outs = [p for g in groups for p in c.worker.prepare_group(start_messages(g.body))]
        assert all(isinstance(p, PreparedStart) for p in outs)
        kept = c.worker.hand_off([p for p in outs if isinstance(p, PreparedStart)])
    assert kept == [] and claims.calls == {"TransactWriteItems": 2}
    handed = queue.take()
    clock.t = T0 + 58
    with counting() as reads:
        resumed = [p for g in handed for p in c.worker.resume_claimed(start_messages(g.body))]
    assert len(resumed) == 30 and all(isinstance(p, PreparedStart) for p in resumed)
    assert reads.calls == {"BatchGetItem": len(handed)} and reads.items_written == 0


def test_on_demand_single_slice_run_costs_three_writes(
    container: Container, queue: MemoryQueue
) -> None:
    job, _ = container.jobs.submit(NOOP, start=False)
    with counting() as c:
        container.jobs.start_run(job.job_id)
        drain(container, queue)
    assert c.writes == 3  # create (taking the job's active slot), start, finish (freeing it)
    assert c.calls["TransactWriteItems"] == 2 and c.calls["UpdateItem"] == 1
    # the job (validation; the start is claimed from its hint), and, once the run ended,
    # its predecessor, which takes its expires_at now that it is no longer the latest
    assert c.reads == 2


def test_the_next_run_gives_its_predecessor_an_expiry_for_one_more_write(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job, _ = container.jobs.submit(NOOP, start=False)
    container.jobs.start_run(job.job_id)
    drain(container, queue)
    clock.advance(1)  # a later slot
    with counting() as c:
        container.jobs.start_run(job.job_id)
        drain(container, queue)
    assert c.writes == 4  # three for the run, one for its predecessor's expires_at
    assert c.calls["UpdateItem"] == 2 and c.reads == 2


def test_a_sliced_run_is_read_before_its_claim(container: Container, queue: MemoryQueue) -> None:
    sliced = {"name": "s", "operations": [{"_op": "range", "end": 2}, {"_op": "noop"}]}
    job, _ = container.jobs.submit(sliced, start=False)
    with counting() as c:
        run = container.jobs.start_run(job.job_id)
        [start] = queue.take()
        assert "ex_id" not in start.body  # no hint: how many slices needs the reader
        queue.messages.append(start)
        drain(container, queue)
    done = container.store.get_run(job.job_id, run.slot)
    assert done is not None and done.status == ExStatus.completed
    assert c.calls["GetItem"] >= 2  # the job (validation), the run at start, ...


def test_a_hinted_start_that_cannot_claim_unread_falls_back_to_reading(
    container: Container, queue: MemoryQueue
) -> None:
    from tests.helpers import deliver

    job, _ = container.jobs.submit(NOOP, start=False)
    run = container.jobs.start_run(job.job_id)
    [start] = queue.take()
    assert start.body["ex_id"] == run.ex_id
    assert deliver(container, start) == "completed"
    with counting() as again:  # a redelivery: the unread claim fails, the read says done
        assert deliver(container, start) == "dropped"
    assert again.calls["UpdateItem"] == 1 and again.calls["GetItem"] == 1, again.calls
    stale = {**start.body, "ex_id": "not-this-run"}  # e.g. the slot was rerun since
    job2, _ = container.jobs.submit(NOOP, start=False)
    run2 = container.jobs.start_run(job2.job_id)
    queue.take()
    stale = {**stale, "job_id": job2.job_id, "slot": run2.slot}
    from chalicelib.adapters.memory import Message

    assert deliver(container, Message("start", stale, 0)) == "completed"  # read, then run
    done = container.store.get_run(job2.job_id, run2.slot)
    assert done is not None and done.status == ExStatus.completed and done.attempts == 1


def test_tick_reads_only_due_jobs(container: Container) -> None:
    for i in range(30):
        schedule = {"rate": "rate(1 minute)"} if i < 3 else {"rate": "rate(1 day)"}
        container.jobs.submit({**NOOP, "schedule": schedule}, start=True)
    container.supervisor.tick(T0)
    with counting() as c:
        stats = container.supervisor.tick(T0 + 60)
    assert stats.runs_created == 3
    shards = container.settings.due_shards + container.settings.lease_shards
    assert c.calls["Query"] == shards + 1  # and the notifications' outbox (empty)
    assert c.items_read == 3 + 1  # the due jobs and the supervisor record


def test_finishing_transaction_returns_the_run_it_wrote(
    container: Container, clock: FakeClock
) -> None:
    """The finish of a slot-holding run is built from the claimed run, not re-read: it must
    equal what a read of the record gives."""
    job, _ = container.jobs.submit({**NOOP, "overlap": "skip"}, start=False)
    run = container.jobs.start_run(job.job_id, args="a b")
    prepared = container.worker.prepare_start(run.job_id, run.slot)
    assert isinstance(prepared, PreparedStart) and prepared.run.holds_slot
    clock.t += 2
    ended = container.worker.apply(
        prepared.run,
        RunTransition(
            Guard(frozenset({ExStatus.running}), lease_token=prepared.token),
            ExStatus.completed,
            sets={
                "processed": 1,
                "remaining": 0,
                "result": {"n": 1},
                "finished_at": clock.t,
                "updated": clock.t,
                "reason": None,
            },
            adds={"attempts": 1},
        ),
    )
    stored = container.store.get_run(run.job_id, run.slot)
    assert ended is not None and stored is not None
    assert ended == stored
    assert ended.status == ExStatus.completed and ended.attempts == 2 and not ended.holds_slot
    assert ended.lease_token is None and ended.check_at is None and ended.result == {"n": 1}
    job_now = container.store.get_job(job.job_id)
    assert job_now is not None and job_now.active_slots == set()


def test_a_tick_racing_another_supervisor_drops_only_the_jobs_it_wrote(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    """Two supervisors fire the same due jobs: the one that comes second writes the jobs
    the other did not in one more transaction, and reads nothing back (the jobs the other
    wrote are named by the refused transaction's reasons)."""
    slot = "2027-01-15T08:01:00Z"
    body = {**NOOP, "schedule": {"at": slot}}
    jobs = [container.jobs.submit({**body, "name": f"r{i}"}, start=True)[0] for i in range(30)]
    clock.t = T0 + 55
    read = [container.store.get_job(j.job_id) for j in jobs]  # both supervisors read them
    due = [j for j in read if j is not None]
    sup = container.supervisor.state()
    other, mine = (Firer(container.store, queue, clock, container.settings) for _ in "ab")
    other_stats, stats = TickStats(), TickStats()
    other.fire_due(copy.deepcopy(due[::3]), T0 + 55, T0 + 60, sup, other_stats)
    assert other_stats.runs_created == 10
    with counting() as c:
        mine.fire_due(due, T0 + 55, T0 + 60, sup, stats)
    assert (stats.runs_created, stats.slot_conflicts) == (20, 10)
    assert c.calls == {"TransactWriteItems": 2}  # refused once, then the 20 others together
    runs = [container.store.get_run(j.job_id, slot) for j in jobs]
    assert len({r.ex_id for r in runs if r is not None}) == 30
