"""A burst's start messages come earlier: the tick sizes each second's lead from how many
runs it starts on it and the store's claim rate, and the start worker claims that early,
so the burst's second finds its runs claimed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest

from chalicelib.adapters.memory import MemoryQueue, Message
from chalicelib.bootstrap import Container, build_container
from chalicelib.config import Settings
from chalicelib.domain.outcomes import StartOutcome
from chalicelib.domain.runs import (
    HANDOFF_LEAD_S,
    MAX_LEAD_S,
    MAX_WAIT_S,
    START_LEAD_S,
    burst_lead,
)
from chalicelib.domain.timefmt import iso
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import FakeClock, SlotWrite, StartMessage, start_messages
from chalicelib.services.entry import PreparedStart
from tests.clients import AS_OWNER
from tests.conftest import T0
from tests.conftest import test_settings as settings_with
from tests.fakes import MemoryStore
from tests.helpers import deliver_starts, start_due
from tests.sim import WORK_OP, SimConfig, Simulation

pytestmark = pytest.mark.fakes

AT = T0 + 60  # every job's one slot


@pytest.fixture
def slow_store(clock: FakeClock, queue: MemoryQueue) -> Iterator[Container]:
    """The fakes, with a store that takes 20 claims' calls a second."""
    settings = settings_with(claim_rate=20.0, lookahead_seconds=60.0)
    c = build_container(settings, store=MemoryStore(settings), queue=queue, clock=clock)
    c.worker.sleep = clock.advance
    yield c


def _submit_burst(c: Container, n: int, **kw: object) -> None:
    for i in range(n):
        body = {
            "name": f"b{i}",
            "operations": [{"_op": "noop"}],
            "schedule": {"at": "2027-01-15T08:01:00Z"},
        }
        c.jobs.as_(AS_OWNER).submit({**body, **kw}, start=True)


def test_the_lead_grows_with_the_burst_and_is_bounded() -> None:
    assert burst_lead(1, 400) == START_LEAD_S
    assert burst_lead(100, 100) == START_LEAD_S + 2
    assert burst_lead(10_000, 100) == MAX_LEAD_S
    assert burst_lead(5, 0) == MAX_LEAD_S  # no rate known: as early as allowed


def test_a_burst_is_sent_early_and_claimed_before_its_second(
    slow_store: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    c = slow_store
    _submit_burst(c, 40)  # 40 runs x 2 calls / 20 a second: 4 s more than usual
    clock.t = AT - 5
    c.supervisor.tick(AT - 5)
    sent = [m for m in queue.messages if m.kind == "start"]
    assert len(sent) == 2  # a burst's starts go in groups of 25 runs due on one second
    starts = [s for m in sent for s in start_messages(m.body)]
    assert len(starts) == 40 and {m.lead for m in starts} == {6.0}
    claimed = [c.worker.prepare_start(m.job_id, m.slot, None, None, m.delivery) for m in starts]
    held = [p.run for p in claimed if isinstance(p, PreparedStart)]
    assert len(held) == 40 and {r.status for r in held} == {ExStatus.running}
    assert {r.started_at for r in held} == {AT}  # claimed 5 s ahead, to start at its second


def test_a_message_without_a_lead_that_comes_that_early_is_sent_again(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    _submit_burst(container, 1)
    clock.t = AT - 5
    container.supervisor.tick(AT - 5)
    (start,) = [m for m in queue.messages if m.kind == "start"]
    assert "lead" not in start.body  # one run: the usual lead
    start.visible_at = AT - 5  # delivered as early as a burst's would be
    assert start_due(container, queue, clock, AT - 5) == ["early"]  # 5 s before its second
    (again,) = [m for m in queue.messages if m.kind == "start"]
    assert again.visible_at == AT - START_LEAD_S


def test_a_messages_lead_is_bounded_where_it_is_read() -> None:
    body = {"job_id": "j", "slot": "s"}
    assert StartMessage.from_body({**body, "lead": 1000}).lead == MAX_LEAD_S
    assert StartMessage.from_body({**body, "lead": -5}).lead == START_LEAD_S
    assert StartMessage.from_body({**body, "lead": "x"}).lead == START_LEAD_S


def test_a_lone_messages_lead_stays_within_what_a_function_may_wait(
    queue: MemoryQueue, clock: FakeClock
) -> None:
    settings = settings_with(claim_rate=2.0, lookahead_seconds=60.0)  # 10 runs: 12 s
    c = build_container(settings, store=MemoryStore(settings), queue=queue, clock=clock)
    _submit_burst(c, 10)  # not a burst (under GROUP_FROM): its messages are not handed off
    clock.t = AT - 30
    c.supervisor.tick(AT - 30)
    starts = [s for m in queue.messages for s in start_messages(m.body)]
    assert len(starts) == 10 and {m.lead for m in starts} == {float(MAX_WAIT_S)}


def _handed_off(c: Container, queue: MemoryQueue, clock: FakeClock, n: int) -> list[Message]:
    """`n` runs due at AT on a store slow enough that their claims begin more than
    MAX_WAIT_S ahead: fired, claimed (as the start worker does: hand_off after the group's
    claims), and their hand-off messages returned."""
    _submit_burst(c, n)
    clock.t = AT - 30
    c.supervisor.tick(AT - 30)
    groups = queue.take()
    lead = START_LEAD_S + n * 2 / 20  # the store takes 20 claims' calls a second
    assert lead > MAX_WAIT_S
    assert {m.lead for g in groups for m in start_messages(g.body)} == {lead}
    clock.t = AT - lead  # delivered that early, as the tick's delay asked
    outcomes = [out for g in groups for out in deliver_starts(c, g)]
    assert outcomes == [StartOutcome.handed_off] * n
    return queue.take()


def test_a_burst_claimed_further_ahead_than_a_function_waits_is_handed_off(
    slow_store: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    """Claims that need more than MAX_WAIT_S are made that early, and the function that
    made them hands the runs, claimed, to messages that arrive HANDOFF_LEAD_S (4 s) before their
    second instead of waiting: each run is read (one call a group), not claimed again, and
    starts on its second."""
    c = slow_store
    handed = _handed_off(c, queue, clock, 200)  # 2 + 200 x 2 / 20 = 22 s ahead
    runs = [c.store.list_runs(f"{m.job_id}")[0] for g in handed for m in start_messages(g.body)]
    assert len(runs) == 200 and {r.status for r in runs} == {ExStatus.running}
    assert len(handed) == 8 and {m.visible_at for m in handed} == {AT - HANDOFF_LEAD_S}
    tokens = {m.claim_token for g in handed for m in start_messages(g.body)}
    assert tokens == {r.lease_token for r in runs} and None not in tokens
    clock.t = AT - HANDOFF_LEAD_S
    outcomes = [out for g in handed for out in deliver_starts(c, g)]
    assert outcomes == [StartOutcome.completed] * 200
    ran = [c.store.list_runs(r.job_id)[0] for r in runs]
    assert {(r.status, r.attempts, r.started_at) for r in ran} == {(ExStatus.completed, 1, AT)}
    again = [out for g in handed for out in deliver_starts(c, g)]  # a redelivery: nothing
    assert again == [StartOutcome.dropped] * 200


def test_a_hand_off_whose_claim_was_taken_over_leaves_the_run_alone(
    slow_store: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    """The sweep takes a claimed run over once its lease expires (its hand-off lost, say):
    a hand-off message that comes after that does not run it a second time."""
    c = slow_store
    first, *_ = _handed_off(c, queue, clock, 100)  # 12 s ahead
    msg = start_messages(first.body)[0]
    run = c.store.get_run(msg.job_id, msg.slot)
    assert run is not None
    taken = c.store.apply_run(run, run.take_over("another-holder", clock.now()))
    assert taken is not None
    clock.t = AT - HANDOFF_LEAD_S
    outcomes = deliver_starts(c, first)
    assert outcomes[0] == StartOutcome.busy
    assert outcomes[1:] == [StartOutcome.completed] * 24


def test_claims_that_cannot_be_handed_off_are_held_to_their_second(
    slow_store: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    """The hand-off messages could not be sent: the function keeps the runs it claimed and
    runs them at their second (late for its own budget, never lost)."""
    c = slow_store
    _submit_burst(c, 100)
    clock.t = AT - 30
    c.supervisor.tick(AT - 30)
    groups = queue.take()

    def refuse(messages: object) -> None:
        raise RuntimeError("SQS unavailable")

    c.worker.queue.send_starts = refuse  # type: ignore[method-assign]
    clock.t = AT - 12
    outcomes = [out for g in groups for out in deliver_starts(c, g)]
    assert outcomes == [StartOutcome.completed] * 100
    assert clock.now() >= AT


def test_a_groups_runs_claimed_one_by_one_wait_no_longer_than_a_function_may(
    slow_store: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    """A group whose transaction fails (one of its runs claimed already: a redelivery, a
    race) falls back to claims one by one, which are never handed off: a run further than
    MAX_WAIT_S from its second is sent again to come nearer it, not claimed and held."""
    c = slow_store
    _submit_burst(c, 100)
    clock.t = AT - 30
    c.supervisor.tick(AT - 30)
    first, *_ = queue.take()
    starts = start_messages(first.body)
    clock.t = AT - 12
    run = c.store.get_run(starts[0].job_id, starts[0].slot)
    assert run is not None
    assert c.store.apply_run(run, run.claim_inline("someone", AT, clock.now())) is not None
    outs = c.worker.prepare_group(starts, "redelivered")
    assert outs == [StartOutcome.early] * 25
    again = [start_messages(m.body) for m in queue.take()]
    assert len(again) == 25 and {m.lead for (m,) in again} == {float(MAX_WAIT_S)}


@pytest.mark.parametrize("lose_at", [None, 30.5])
def test_a_handed_off_burst_runs_once_even_if_its_hand_off_messages_are_lost(
    lose_at: float | None,
) -> None:
    """In virtual time (tests/sim.py: the supervisor, pollers and workers as actors): 40
    runs due at 40 s on a store that takes 5 claim calls a second are claimed 18 s ahead
    and handed off. Delivered, each starts on its second; lost (the queue's messages gone
    at 30.5 s, after the hand-off), each is run by the sweep once its claim's lease
    expires, late but once."""
    base = Settings(region="us-east-1", claim_rate=5.0).with_prefix("sim")
    config = SimConfig(tick_s=1, lookahead_s=30, settings=base, lose_starts_at=[lose_at or 0])
    if lose_at is None:
        config = replace(config, lose_starts_at=())
    with Simulation(config) as sim:
        at = iso(sim.t0 + 40)
        ids = [
            sim.submit(
                {
                    "name": f"h{i}",
                    "operations": [{"_op": "noop"}, {"_op": WORK_OP}],
                    "schedule": {"at": at},
                }
            )
            for i in range(40)
        ]
        result = sim.run(40 + 60 + 30)
    assert not result.errors, result.errors
    runs = [r for job_id in ids for r in result.records(job_id)]
    assert len(runs) == 40 and {r.status for r in runs} == {"completed"}
    assert len(result.work_calls) == 40 and set(result.work_calls.values()) == {1}
    ended = sorted(result.rel(r.finished_at) or 0.0 for r in runs)
    if lose_at is None:
        assert {result.rel(r.started_at) for r in runs} == {40.0} and ended[-1] < 41
    else:
        assert result.lost_starts == 2  # the two hand-off groups
        assert ended[0] >= 40.0 + 60 and ended[-1] < 40 + 60 + 30  # the lease, then the sweep


def test_a_store_slower_than_configured_lengthens_the_bursts_lead(
    queue: MemoryQueue, clock: FakeClock
) -> None:
    """The tick measures the store on its own writes (each creation, like each claim,
    writes a run and its job): 200 runs written in 4 s are 100 claim calls a second, not
    the configured 400, so the burst's lead is 2 + 200 x 2 / 100 = 6 s, not 3 s."""
    settings = settings_with(claim_rate=400.0, lookahead_seconds=60.0, fire_concurrency=1)
    store = MemoryStore(settings)
    c = build_container(settings, store=store, queue=queue, clock=clock)
    _submit_burst(c, 200)
    create = store.create_slots_refused

    def slow(writes: Sequence[SlotWrite]) -> frozenset[int] | None:
        clock.advance(len(writes) / 50)  # a second for 50 jobs
        return create(writes)

    store.create_slots_refused = slow  # type: ignore[method-assign]
    clock.t = AT - 50
    c.supervisor.tick(AT - 50)
    starts = [s for m in queue.messages for s in start_messages(m.body)]
    assert len(starts) == 200 and {m.lead for m in starts} == {6.0}
    assert burst_lead(200, 400.0) == 3.0  # what the configured rate alone gives
