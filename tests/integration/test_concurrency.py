"""Races: two supervisors, doubled messages and racing workers never lose or double a run.

They run on moto and on DynamoDB Local. moto alone does not serialise a condition check
with its write, so two threads could both pass `attribute_not_exists` there (seen: 5 runs
for 4 slots); the test session serialises its DynamoDB requests
(`cadenza_tools.local.moto_serial`), as DynamoDB and DynamoDB Local do."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import pytest

from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory import MemoryQueue, Message
from chalicelib.bootstrap import Container, build_container
from chalicelib.config import Settings
from chalicelib.domain.outcomes import StartOutcome
from chalicelib.domain.transitions import ExStatus, SliceState
from chalicelib.ports import FakeClock, StartMessage, start_messages
from chalicelib.services.entry import PreparedStart
from tests.conftest import T0, drain
from tests.helpers import deliver, deliver_starts
from tests.helpers import race as _race

ROUNDS = 15
AT_T0_60 = "2027-01-15T08:01:00Z"  # T0 + 60 s
JOBS_PER_ROUND = 4


@pytest.fixture
def racing(backend: Settings) -> Settings:
    """The `backend` (moto or DynamoDB Local), firing in parallel."""
    return replace(backend, fire_concurrency=8)


def _pair(backend: Settings) -> tuple[Container, Container, MemoryQueue, FakeClock]:
    """Two independent containers (two supervisors / two workers) over one store."""
    DynamoStore(backend).ensure_tables()
    clock, queue = FakeClock(T0), MemoryQueue()
    a = build_container(backend, store=DynamoStore(backend), queue=queue, clock=clock)
    b = build_container(backend, store=DynamoStore(backend), queue=queue, clock=clock)
    a.worker.sleep = b.worker.sleep = lambda s: None
    return a, b, queue, clock


def test_two_supervisors_create_exactly_one_run_per_slot(racing: Settings) -> None:
    a, b, _, _ = _pair(racing)
    jobs = [
        a.jobs.submit(
            {
                "name": f"j{i}",
                "overlap": "allow",
                "operations": [{"_op": "noop"}],
                "schedule": {"rate": "rate(10 seconds)"},
            },
            start=True,
        )[0]
        for i in range(JOBS_PER_ROUND)
    ]
    sent = 0
    for r in range(ROUNDS):
        now = T0 + 10 * (r + 1)
        sa, sb = _race(partial(a.supervisor.tick, now), partial(b.supervisor.tick, now))
        assert sa.runs_created + sb.runs_created == JOBS_PER_ROUND, (r, sa, sb)
        sent += sa.starts_sent + sb.starts_sent
    for job in jobs:
        runs = a.store.list_runs(job.job_id, limit=1000)
        slots = [run.slot for run in runs]
        assert len(slots) == len(set(slots)) == ROUNDS, slots
    assert sent == ROUNDS * JOBS_PER_ROUND  # one start message per new run, not two


def test_the_same_slice_delivered_twice_at_once_is_processed_once(racing: Settings) -> None:
    a, b, queue, _ = _pair(racing)
    for _ in range(5):
        job, run = a.jobs.submit(
            {
                "name": "s",
                "workers": 4,
                "operations": [{"_op": "range", "end": 4}, {"_op": "noop"}],
            },
            start=True,
        )
        assert run is not None
        deliver(a, queue.take()[0])
        msgs = queue.take()
        for m in msgs:
            outcomes = _race(partial(deliver, a, m), partial(deliver, b, m))
            assert sorted(outcomes).count("completed") == 1, outcomes
        done = a.store.get_run(job.job_id, run.slot)
        assert done is not None
        assert (done.status, done.processed, done.remaining) == (ExStatus.completed, 4, 0)
        assert all(
            s.state == SliceState.completed and s.attempts == 1
            for s in a.store.list_slices(run.ex_id)
        )


def test_racing_start_handlers_start_a_run_once(racing: Settings) -> None:
    a, b, queue, _ = _pair(racing)
    for body in (
        {"name": "inline", "operations": [{"_op": "noop"}, {"_op": "noop"}]},
        {"name": "sliced", "workers": 2, "operations": [{"_op": "range", "end": 5}]},
    ):
        job, run = a.jobs.submit(body, start=True)
        assert run is not None
        start = queue.take()[0]
        outcomes = _race(partial(deliver, a, start), partial(deliver, b, start))
        assert sorted(outcomes)[0] == "busy" or outcomes.count("completed") == 1, outcomes
        drain(a, queue)
        done = a.store.get_run(job.job_id, run.slot)
        assert done is not None and done.status == ExStatus.completed
        assert done.processed == done.slices_total
        assert done.attempts <= 1


@pytest.mark.parametrize("finisher", ["worker", "sweep"])
def test_last_slices_finishing_together_finalize_once(racing: Settings, finisher: str) -> None:
    a, b, queue, clock = _pair(racing)
    job, run = a.jobs.submit(
        {"name": "f", "workers": 2, "operations": [{"_op": "range", "end": 2}]}, start=True
    )
    assert run is not None
    deliver(a, queue.take()[0])
    m1, m2 = queue.take()
    if finisher == "worker":
        _race(lambda: deliver(a, m1), lambda: deliver(b, m2))
    else:
        deliver(a, m1)
        clock.advance(61)  # past the progress check (lease 60 s), well within the timeout
        _race(lambda: deliver(b, m2), lambda: a.supervisor.tick(clock.now()))
    done = a.store.get_run(job.job_id, run.slot)
    assert done is not None
    assert (done.status, done.processed, done.remaining) == (ExStatus.completed, 2, 0)


def test_on_demand_runs_and_a_slots_entry_never_leave_two_in_progress(racing: Settings) -> None:
    """OpenSpecimen's rule (overlap 'skip'): at most one IN_PROGRESS run per job, held by a
    conditional write on the job's active slots, whoever creates the runs and however they
    race: two supervisors create the slot's run (holding nothing), then two start workers
    enter it at its second while two on-demand runs are requested."""
    from chalicelib.domain.errors import Conflict

    a, b, queue, clock = _pair(racing)
    job, _ = a.jobs.submit(
        {"name": "one", "operations": [{"_op": "noop"}], "schedule": {"rate": "rate(10 seconds)"}},
        start=True,
    )

    def on_demand(c: Container) -> str:
        try:
            c.jobs.start_run(job.job_id, args="x")
            return "created"
        except Conflict:
            return "refused"

    seen: set[str] = set()
    for r in range(8):
        now = T0 + 10 * (r + 1)
        clock.t = now
        _race(partial(a.supervisor.tick, now), partial(b.supervisor.tick, now))
        [start] = queue.take()
        outcomes = _race(
            partial(deliver, a, start),
            partial(deliver, b, start),
            lambda: on_demand(a),
            lambda: on_demand(b),
        )
        runs = a.store.list_runs(job.job_id, limit=1000)
        scheduled = next(x for x in runs if x.scheduled_start == now and "#m-" not in x.slot)
        holders = [x for x in runs if x.holds_slot]
        stored = a.store.get_job(job.job_id)
        assert stored is not None and stored.active_slots == {x.slot for x in holders}
        assert len(holders) <= 1 and outcomes.count("created") <= 1, (outcomes, holders)
        assert scheduled.status in (ExStatus.completed, ExStatus.skipped), outcomes
        if scheduled.status == ExStatus.skipped:
            assert scheduled.reason == "overlap" and outcomes.count("created") == 1
        seen.add(str(scheduled.status))
        drain(a, queue)  # the on-demand run finishes; the next round may start another
        stored = a.store.get_job(job.job_id)
        assert stored is not None and stored.active_slots == set()
    assert seen, "no round ran"


def test_a_redelivered_hinted_start_ahead_of_its_second_claims_its_run_and_slot_once(
    racing: Settings,
) -> None:
    """A scheduled run of a job that limits its active runs (overlap skip) is claimed with
    its job's slot from its start hint, without a read: two deliveries of that message at
    once (a redelivery, two workers) still run it once and leave the slot free."""
    a, b, queue, clock = _pair(racing)
    jobs = [
        a.jobs.submit(
            {
                "name": f"h{i}",
                "operations": [{"_op": "noop"}],
                "schedule": {"at": "2027-01-15T08:01:00Z"},
            },
            start=True,
        )[0]
        for i in range(JOBS_PER_ROUND)
    ]
    slot_at = T0 + 60
    clock.t = slot_at - 3  # the tick's look-ahead creates the runs; their starts come early
    a.supervisor.tick(clock.t)
    starts = [StartMessage.from_body(m.body) for m in queue.take()]
    assert len(starts) == JOBS_PER_ROUND
    for start in starts:
        assert start.hint is not None and start.hint.config is not None

        def claim(c: Container, m: StartMessage = start) -> object:
            return c.worker.prepare_start(m.job_id, m.slot, None, m.hint, m.delivery)

        claims = _race(partial(claim, a), partial(claim, b))
        prepared = [p for p in claims if isinstance(p, PreparedStart)]
        assert len(prepared) == 1, claims
        assert prepared[0].enter is None and prepared[0].run.holds_slot
        assert a.worker.run_prepared(prepared[0]) == "completed"
    for job in jobs:
        [run] = a.store.list_runs(job.job_id)
        assert (run.status, run.attempts, run.holds_slot) == (ExStatus.completed, 1, False)
        stored = a.store.get_job(job.job_id)
        assert stored is not None and stored.active_slots == set()


def test_a_start_hint_whose_config_is_not_the_runs_is_not_believed(racing: Settings) -> None:
    """The claim from a hint is conditioned on the stored config: a message carrying other
    operations falls back to reading the run, which runs what was stored."""
    a, _, queue, clock = _pair(racing)
    job, _ = a.jobs.submit(
        {
            "name": "f",
            "operations": [{"_op": "noop"}, {"_op": "echo"}],
            "schedule": {"at": AT_T0_60},
        },
        start=True,
    )
    clock.t = T0 + 57
    a.supervisor.tick(clock.t)
    [message] = queue.take()
    body = dict(message.body)
    body["config"] = {**body["config"], "operations": [{"_op": "noop"}, {"_op": "fail"}]}
    start = StartMessage.from_body(body)
    prepared = a.worker.prepare_start(start.job_id, start.slot, None, start.hint, start.delivery)
    assert isinstance(prepared, PreparedStart)
    assert prepared.run.operations == [{"_op": "noop"}, {"_op": "echo"}]  # read from the store
    assert a.worker.run_prepared(prepared) == "completed"
    [run] = a.store.list_runs(job.job_id)
    assert run.status == ExStatus.completed and run.attempts == 1


def _burst(
    c: Container, queue: MemoryQueue, clock: FakeClock, jobs: int
) -> tuple[list[str], list[Message]]:
    """`jobs` jobs due on one second (a burst: their starts go in groups), fired ahead."""
    ids = [
        c.jobs.submit(
            {"name": f"g{i}", "operations": [{"_op": "noop"}], "schedule": {"at": AT_T0_60}},
            start=True,
        )[0].job_id
        for i in range(jobs)
    ]
    clock.t = T0 + 55
    c.supervisor.tick(clock.t)
    clock.t = T0 + 58  # delivered: 2 s before their second
    return ids, queue.take()


def _ran_once(c: Container, job_ids: list[str]) -> None:
    for job_id in job_ids:
        [run] = c.store.list_runs(job_id)
        assert (run.status, run.attempts, run.holds_slot) == (ExStatus.completed, 1, False)
        job = c.store.get_job(job_id)
        assert job is not None and job.active_slots == set()


def test_a_bursts_group_delivered_twice_at_once_claims_each_run_and_slot_once(
    racing: Settings,
) -> None:
    """A burst's starts come in groups whose runs are claimed with their slots in one
    transaction: the same group handled by two workers at once (a redelivery) claims each
    run once; the loser's transaction fails whole and its runs are then found claimed."""
    a, b, queue, clock = _pair(racing)
    ids, groups = _burst(a, queue, clock, 30)
    assert [len(start_messages(g.body)) for g in groups] == [25, 5]

    def claim(c: Container, g: Message, message_id: str) -> list[object]:
        return list(c.worker.prepare_group(start_messages(g.body), message_id))

    for n, group in enumerate(groups):
        mid = f"group-{n}"  # a redelivery has the same message id
        raced = _race(partial(claim, a, group, mid), partial(claim, b, group, mid))
        outs = [o for got in raced for o in got]
        assert not any(isinstance(o, Exception) for o in outs), outs
        prepared = [o for o in outs if isinstance(o, PreparedStart)]
        ran = [a.worker.run_prepared(p) for p in prepared]
        assert ran.count(StartOutcome.completed) == len(start_messages(group.body)), ran
    _ran_once(a, ids)


def test_a_group_with_a_run_claimed_already_claims_the_others_one_by_one(
    racing: Settings,
) -> None:
    a, _, queue, clock = _pair(racing)
    ids, [group, *rest] = _burst(a, queue, clock, 30)
    starts = start_messages(group.body)
    first = a.worker.prepare_start(starts[0].job_id, starts[0].slot, None, starts[0].hint)
    assert isinstance(first, PreparedStart)
    outs = a.worker.prepare_group(starts, "group-0")
    assert outs[0] == "busy"
    prepared = [first, *(o for o in outs[1:] if isinstance(o, PreparedStart))]
    assert len(prepared) == 25
    assert {a.worker.run_prepared(p) for p in prepared} == {"completed"}
    for other in rest:
        for out in deliver_starts(a, other):
            assert out == "completed"
    _ran_once(a, ids)


def test_two_supervisors_sweeping_lost_starts_side_by_side_resend_each_once(
    racing: Settings,
) -> None:
    """After a restart every start the lost queue held is due at once: each supervisor's
    sweep repairs them side by side (`fire_concurrency` at a time), and each is re-sent by
    one of them only."""
    a, b, queue, clock = _pair(racing)
    body = {"operations": [{"_op": "noop"}], "lease_seconds": 20}
    runs = [a.jobs.submit({**body, "name": f"s{i}"}, start=True)[1] for i in range(40)]
    queue.take()  # the queue died with the stack
    clock.advance(21)
    sa, sb = _race(partial(a.supervisor.tick, clock.now()), partial(b.supervisor.tick, clock.now()))
    assert sa.resent + sb.resent == 40 and sa.errors == sb.errors == 0
    resent = [start_messages(m.body)[0] for m in queue.messages]
    assert sorted(m.slot for m in resent) == sorted(r.slot for r in runs if r is not None)
    drain(a, queue)
    for run in runs:
        assert run is not None
        done = a.store.get_run(run.job_id, run.slot)
        assert done is not None and done.status == ExStatus.completed and done.attempts == 1


def test_a_burst_handed_off_runs_each_run_once_under_doubled_messages(racing: Settings) -> None:
    """A burst claimed further ahead than a start function waits is handed off (claimed,
    then run by later messages that carry the claims' tokens): each claim group delivered
    to two workers at once, and each hand-off group too, still claim and run every run
    once, its job's slot taken and freed once."""
    slow = replace(racing, claim_rate=5.0, lookahead_seconds=60.0)  # 30 runs: 14 s ahead
    a, b, queue, clock = _pair(slow)
    ids = [
        a.jobs.submit(
            {"name": f"h{i}", "operations": [{"_op": "noop"}], "schedule": {"at": AT_T0_60}},
            start=True,
        )[0].job_id
        for i in range(30)
    ]
    clock.t = T0 + 30
    a.supervisor.tick(clock.t)
    groups = queue.take()
    assert {m.lead for g in groups for m in start_messages(g.body)} == {14.0}
    clock.t = T0 + 46
    for group in groups:
        raced = _race(partial(deliver_starts, a, group), partial(deliver_starts, b, group))
        outs = [o for got in raced for o in got]
        assert outs.count(StartOutcome.handed_off) == len(start_messages(group.body)), outs
    later = queue.take()
    handed = [g for g in later if start_messages(g.body)[0].claim_token]
    assert sum(len(start_messages(g.body)) for g in handed) == 30
    # the loser's one-by-one claims were too early for a lone message: sent again, and
    # then find their runs claimed
    clock.t = T0 + 52
    assert {o for g in later if g not in handed for o in deliver_starts(b, g)} <= {"busy"}
    clock.t = T0 + 58
    for group in handed:
        raced = _race(partial(deliver_starts, a, group), partial(deliver_starts, b, group))
        outs = [o for got in raced for o in got]
        assert outs.count(StartOutcome.completed) == len(start_messages(group.body)), outs
    _ran_once(a, ids)
