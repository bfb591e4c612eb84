"""The simulation itself (tests/sim.py): virtual time, actors overlapping, faults."""

from __future__ import annotations

import time

import pytest

from tests.sim import T0, Scheduler, SimConfig, Simulation, VirtualClock, every

pytestmark = pytest.mark.fakes


def test_actors_take_turns_in_virtual_time() -> None:
    clock = VirtualClock(0.0)
    sched = Scheduler(clock)
    seen: list[tuple[float, str]] = []

    def actor(name: str, step: float) -> None:
        for _ in range(3):
            seen.append((clock.now(), name))
            sched.sleep(step)

    child_done: list[float] = []

    def parent() -> None:
        kids = [
            sched.spawn("a", lambda: actor("a", 2.0)),
            sched.spawn("b", lambda: actor("b", 3.0)),
        ]
        sched.join(kids)
        child_done.append(clock.now())

    sched.spawn("parent", parent)
    sched.run_until(100.0)
    sched.close()
    assert seen == [
        (0.0, "a"), (0.0, "b"), (2.0, "a"), (3.0, "b"), (4.0, "a"), (6.0, "b"),
    ]  # fmt: skip
    assert child_done == [9.0]  # b's last sleep ends at 9
    assert clock.now() == 100.0


def test_runs_take_their_time_and_overlap_the_ticks() -> None:
    wall = time.monotonic()
    with Simulation(SimConfig(tick_s=1, lookahead_s=5)) as sim:
        job_id = sim.submit(every(30, work_s=12.5))
        result = sim.run(300)
    assert time.monotonic() - wall < 10  # 300 ticks of virtual time, a fraction of a second
    assert not result.errors
    ran = [r for r in result.records(job_id) if r.slot <= T0 + 270]
    assert [result.rel(r.slot) for r in ran] == [30.0 * k for k in range(1, 10)]
    assert {(r.status, r.started_at - r.slot) for r in ran if r.started_at} == {("completed", 0.0)}
    assert {r.finished_at - r.started_at for r in ran if r.finished_at and r.started_at} == {12.5}
    assert sum(stats.runs_created for _, stats in result.ticks) >= 9
    assert len(result.ticks) == 301  # a tick at 0, 1, ..., 300 s


def test_a_supervisor_outage_means_no_ticks() -> None:
    with Simulation(SimConfig(tick_s=1, supervisor_down=[(10.0, 20.0)])) as sim:
        result = sim.run(30)
    at = [result.rel(t) for t, _ in result.ticks]
    assert 9.0 in at and 20.0 in at
    assert not [t for t in at if t is not None and 10.0 <= t < 20.0]


def test_lost_start_messages_are_counted_and_never_delivered() -> None:
    with Simulation(SimConfig(tick_s=1, lookahead_s=5, lose_starts_at=[5.5])) as sim:
        job_id = sim.submit(every(10, work_s=0.5))
        result = sim.run(9)  # the run of slot 10 was created at 5 s, its start lost at 5.5 s
    assert result.lost_starts == 1
    assert [r.status for r in result.records(job_id)] == ["pending"]
    assert result.work_calls == {}
