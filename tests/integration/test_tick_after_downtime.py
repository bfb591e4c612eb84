"""The first tick after downtime: every job's runs are written before the missed slots'
ledger records, so the ledger of a long outage does not hold the on-time slots back; a
ledger write that does not apply is noted on the job and written by a later tick."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.jobs import Job
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import FakeClock, SlotWrite, start_messages
from tests.clients import AS_OWNER
from tests.conftest import T0
from tests.helpers import start_due

pytestmark = pytest.mark.fakes

NOOP = [{"_op": "noop"}, {"_op": "noop"}]


def _submit(c: Container, name: str, **kw: object) -> Job:
    body: dict[str, object] = {
        "name": name,
        "operations": NOOP,
        "schedule": {"rate": "rate(1 minute)"},
    }
    body.update(kw)
    job, _ = c.jobs.as_(AS_OWNER).submit(body, start=True)
    return job


def _statuses(c: Container, job: Job) -> list[tuple[str, str]]:
    return sorted((r.slot[11:16], str(r.status)) for r in c.store.list_runs(job.job_id, limit=100))


def _record(
    c: Container, monkeypatch: pytest.MonkeyPatch, refuse_ledger: bool = False
) -> list[list[str]]:
    """The statuses of the records of each create_slots call, in order."""
    calls: list[list[str]] = []
    original = c.store.create_slots

    def create_slots(writes: Sequence[SlotWrite]) -> bool:
        calls.append([str(r.status) for w in writes for r in w.records])
        if refuse_ledger and any(w.ledger for w in writes):
            return False
        return original(writes)

    monkeypatch.setattr(c.store, "create_slots", create_slots)
    return calls


def test_the_runs_go_before_the_ledger_of_missed_slots(
    container: Container, queue: MemoryQueue, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = [_submit(container, f"j{i}", catchup="none") for i in range(3)]
    calls = _record(container, monkeypatch)
    clock.t = T0 + 302  # 08:01..08:04 missed while down; 08:05 is 2 s past: on time
    stats = container.supervisor.tick(T0 + 302)
    kinds = [set(c) for c in calls]
    assert kinds[0] == {"pending"} and all(k == {"missed"} for k in kinds[1:])
    assert sum(c.count("pending") for c in calls) == 3 and stats.slots_missed == 12
    assert start_due(container, queue, clock, T0 + 302) == ["completed"] * 3
    for job in jobs:
        stored = container.store.get_job(job.job_id)
        assert stored is not None and stored.unrecorded == []
        assert _statuses(container, job) == [
            *[(f"08:0{m}", "missed") for m in (1, 2, 3, 4)],
            ("08:05", "completed"),
        ]


def test_missed_slots_left_unrecorded_are_written_by_a_later_tick(
    container: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _submit(container, "j", catchup="none")
    _record(container, monkeypatch, refuse_ledger=True)
    clock.t = T0 + 302
    container.supervisor.tick(T0 + 302)
    stored = container.store.get_job(job.job_id)
    assert stored is not None and [s for s, _ in stored.unrecorded] == [
        T0 + 60 * m for m in (1, 2, 3, 4)
    ]
    assert _statuses(container, job) == [("08:05", "pending")]
    monkeypatch.undo()
    clock.t = T0 + 356
    stats = container.supervisor.tick(T0 + 356)  # the job's next slot is due: its ledger too
    assert stats.runs_created == 1 and stats.slots_missed == 4
    stored = container.store.get_job(job.job_id)
    assert stored is not None and stored.unrecorded == []
    got = {slot: status for slot, status in _statuses(container, job)}
    assert got == {
        **{f"08:0{m}": str(ExStatus.missed) for m in (1, 2, 3, 4)},
        "08:05": "pending",
        "08:06": "pending",
    }


def test_a_run_written_late_by_a_slow_tick_is_judged_from_its_writing(
    container: Container, queue: MemoryQueue, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = _submit(container, "j", catchup="none")
    original = container.store.create_slots

    def slow(writes: Sequence[SlotWrite]) -> bool:
        clock.t += 20  # an emulator catching up after downtime
        return original(writes)

    monkeypatch.setattr(container.store, "create_slots", slow)
    clock.t = T0 + 302
    container.supervisor.tick(T0 + 302)  # plans 08:05 on time, writes it 20 s later
    run = container.store.get_run(job.job_id, "2027-01-15T08:05:00Z")
    assert run is not None and (run.created, run.check_at) == (T0 + 302, T0 + 304)
    sent = [m.body for m in queue.messages if m.kind == "start"]
    assert [b.get("sent_at") for b in sent] == [T0 + 322]  # when the tick could send it
    assert start_due(container, queue, clock, T0 + 323) == ["completed"]  # not missed
    assert ("08:05", "completed") in _statuses(container, job)


def test_runs_written_together_are_created_in_slot_order(
    container: Container, clock: FakeClock
) -> None:
    job = _submit(container, "j", catchup="all", max_catchup=3, misfire_grace_seconds=600)
    clock.t = T0 + 302  # 08:02..08:04 caught up, 08:05 on time: one chunk
    container.supervisor.tick(T0 + 302)
    runs = sorted(container.store.list_runs(job.job_id, limit=100), key=lambda r: r.slot)
    live = [r for r in runs if r.status != ExStatus.missed]
    assert len(live) == 4
    created = [r.created for r in live]
    assert created == sorted(created) and len(set(created)) == 4  # no two tie


def test_each_transactions_imminent_starts_are_sent_before_the_next_is_written(
    container: Container, queue: MemoryQueue, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick after downtime writes many jobs' runs in several transactions: the starts of
    those written first go out at once, not after every other job's write."""
    for i in range(60):  # 2 items a job (its run, itself): 50 jobs in the first transaction
        _submit(container, f"j{i}", schedule={"interval_seconds": 10})
    sent_before: list[int] = []
    original = container.store.create_slots

    def create_slots(writes: Sequence[SlotWrite]) -> bool:
        sent_before.append(sum(len(start_messages(m.body)) for m in queue.sent))
        return original(writes)

    monkeypatch.setattr(container.store, "create_slots", create_slots)
    clock.t = T0 + 22  # 08:00:10 missed, 08:00:20 on time
    stats = container.supervisor.tick(T0 + 22)
    assert stats.runs_created == 60
    assert sent_before[:2] == [0, 50]  # then the missed slots' ledger


def test_a_long_outages_ledger_is_left_to_later_ticks_past_half_the_look_ahead(
    container: Container, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = [_submit(container, f"j{i}", catchup="none") for i in range(2)]
    original = container.store.create_slots
    lookahead = container.settings.lookahead_seconds

    def slow(writes: Sequence[SlotWrite]) -> bool:
        clock.t += lookahead  # an emulator catching up after downtime
        return original(writes)

    monkeypatch.setattr(container.store, "create_slots", slow)
    clock.t = T0 + 302  # 08:01..08:04 missed, 08:05 on time
    stats = container.supervisor.tick(T0 + 302)
    assert (stats.runs_created, stats.slots_missed, stats.ledger_deferred) == (2, 0, 8)
    for job in jobs:
        stored = container.store.get_job(job.job_id)
        assert stored is not None and len(stored.unrecorded) == 4
        assert _statuses(container, job) == [("08:05", "pending")]
    monkeypatch.undo()
    clock.t = T0 + 356
    stats = container.supervisor.tick(T0 + 356)  # the jobs' next slots: their ledgers too
    assert (stats.slots_missed, stats.ledger_deferred) == (8, 0)
    for job in jobs:
        assert [s for s, st in _statuses(container, job) if st == "missed"] == [
            f"08:0{m}" for m in (1, 2, 3, 4)
        ]


def test_a_sweep_backlog_is_left_to_later_ticks_past_half_the_look_ahead(
    container: Container, queue: MemoryQueue, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = [_submit(container, f"j{i}") for i in range(3)]
    clock.t = T0 + 55
    assert container.supervisor.tick(T0 + 55).runs_created == 3  # for 08:01
    assert len(queue.take()) == 3  # the starts, lost with the stack's queue
    original = container.store.apply_run
    lookahead = container.settings.lookahead_seconds

    def slow(*args: object, **kwargs: object) -> object:
        clock.t += lookahead  # a store slow to answer after a restart
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(container.store, "apply_run", slow)
    clock.t = T0 + 63
    stats = container.supervisor.tick(T0 + 63)
    width = container.settings.fire_concurrency
    assert (stats.stalled_read, stats.resent, stats.sweep_deferred) == (3, width, 3 - width)
    monkeypatch.undo()
    clock.t += 1
    stats = container.supervisor.tick(clock.t)  # the rest, still due
    assert (stats.resent, stats.sweep_deferred) == (3 - width, 0)
    resent = [m.job_id for message in queue.take() for m in start_messages(message.body)]
    assert sorted(resent) == sorted(j.job_id for j in jobs)
