"""Issue #15: overlap is decided at the slot, not when its run is created ahead of it.

Each test runs the whole engine on the fakes in virtual time (tests/sim.py): the
supervisor ticking with its look-ahead, the start worker's pollers, runs of a `work` op
that take seconds, supervisor outages and lost start messages."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from tests.sim import T0, RunRecord, SimConfig, SimResult, Simulation, every

pytestmark = pytest.mark.fakes

START_WINDOW_S = SimConfig().start_window_s  # the start worker's batching window (app.py)
ON_TIME_S = START_WINDOW_S  # a run starts within this of its slot (the window's worst case)
EPS = 1e-6

POLICIES: dict[str, dict[str, Any]] = {
    "skip": {"overlap": "skip"},
    "buffer_one": {"overlap": "buffer_one"},
    "cancel_other": {"overlap": "cancel_other"},
    "allow_1": {"overlap": "allow", "max_active_runs": 1},
}


def _simulate(config: SimConfig, definition: dict[str, Any], until: float) -> tuple[SimResult, str]:
    with Simulation(config) as sim:
        job_id = sim.submit(definition)
        return sim.run(until), job_id


def _slots(interval: float, n: int, first: int = 1) -> list[float]:
    return [T0 + k * interval for k in range(first, first + n)]


def _one_per_slot(result: SimResult, job_id: str, slots: Sequence[float]) -> list[RunRecord]:
    """The record of each slot, checking there is exactly one."""
    by_slot = result.by_slot(job_id)
    table = result.table(job_id)
    out = []
    for slot in slots:
        got = by_slot.get(slot, [])
        assert len(got) == 1, f"slot {result.rel(slot)}: {len(got)} records\n{table}"
        out.append(got[0])
    return out


def _ran_once_on_time(result: SimResult, job_id: str, rec: RunRecord) -> None:
    """The slot's run completed, started within ON_TIME_S of its slot, its work done once."""
    what = f"slot {result.rel(rec.slot)}\n{result.table(job_id)}"
    assert rec.status == "completed", what
    assert rec.started_at is not None, what
    assert rec.slot - EPS <= rec.started_at <= rec.slot + ON_TIME_S + EPS, what
    assert result.work_calls.get(rec.ex_id) == 1, what
    assert rec.attempts == 1, what


def _never_two_at_once(result: SimResult, job_id: str) -> None:
    ran = sorted(
        (r for r in result.records(job_id) if r.ran and r.started_at is not None),
        key=lambda r: r.started_at or 0.0,
    )
    for a, b in itertools.pairwise(ran):
        assert a.finished_at is not None and b.started_at is not None
        assert a.finished_at <= b.started_at + EPS, (
            f"slots {result.rel(a.slot)} and {result.rel(b.slot)} ran at once\n"
            f"{result.table(job_id)}"
        )


# ---- runs shorter than the interval: every slot runs -------------------------------------------
N_SLOTS = 5


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    lookahead=st.sampled_from([5, 30, 60]),
    tick_s=st.sampled_from([1, 60]),
    interval=st.integers(1, 60),
    fraction=st.floats(0.0, 1.0),
    policy=st.sampled_from(sorted(POLICIES)),
)
@example(lookahead=30, tick_s=1, interval=10, fraction=0.0, policy="skip")  # the case
@example(lookahead=60, tick_s=60, interval=10, fraction=0.5, policy="skip")  # AWS, by default
@example(lookahead=60, tick_s=60, interval=1, fraction=1.0, policy="buffer_one")
def test_runs_shorter_than_the_interval_run_every_slot(
    lookahead: int, tick_s: int, interval: int, fraction: float, policy: str
) -> None:
    assume(tick_s <= lookahead)
    duration = max(0.0, 0.8 * interval - 0.05) * fraction
    definition = every(interval, work_s=duration, **POLICIES[policy])
    slots = _slots(interval, N_SLOTS)
    until = slots[-1] - T0 + duration + 2 * ON_TIME_S
    result, job_id = _simulate(SimConfig(tick_s=tick_s, lookahead_s=lookahead), definition, until)
    assert not result.errors
    for rec in _one_per_slot(result, job_id, slots):
        _ran_once_on_time(result, job_id, rec)
    skipped = [r for r in result.records(job_id) if r.status in ("skipped", "missed")]
    assert not skipped, result.table(job_id)
    _never_two_at_once(result, job_id)


# ---- runs longer than the interval, under `skip`: skipped only for a real overlap --------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lookahead=st.sampled_from([5, 30, 60]),
    tick_s=st.sampled_from([1, 60]),
    interval=st.integers(2, 30),
    factor=st.floats(1.1, 1.9) | st.floats(2.1, 2.9),
)
@example(lookahead=30, tick_s=1, interval=10, factor=1.5)
@example(lookahead=60, tick_s=60, interval=10, factor=2.5)
def test_longer_runs_are_skipped_only_when_another_really_runs(
    lookahead: int, tick_s: int, interval: int, factor: float
) -> None:
    assume(tick_s <= lookahead)
    duration = interval * factor
    slots = _slots(interval, 8)
    until = slots[-1] - T0 + duration + 2 * ON_TIME_S
    # a one-slice run's lease must cover its work, or the sweep takes it for lost
    definition = every(interval, work_s=duration, lease_seconds=int(duration) + 60)
    result, job_id = _simulate(SimConfig(tick_s=tick_s, lookahead_s=lookahead), definition, until)
    assert not result.errors
    records = _one_per_slot(result, job_id, slots)
    assert records[0].status == "completed", result.table(job_id)
    for rec in records:
        others = [r for r in result.running_at(job_id, rec.slot) if r.slot != rec.slot]
        what = f"slot {result.rel(rec.slot)}\n{result.table(job_id)}"
        if rec.status == "skipped":
            assert rec.reason == "overlap", what
            assert others, f"skipped for an overlap, but nothing ran then: {what}"
        else:
            assert not others, f"should have been skipped: {what}"
            _ran_once_on_time(result, job_id, rec)
    _never_two_at_once(result, job_id)


# ---- a restart within the misfire grace ---------------------------------------------------------
RESTART_INTERVAL = 10
DOWN = (12.0, 47.0)  # 35 s without ticks: slots 20, 30, 40 missed; 50 due 3 s after the restart
MISSED = [T0 + s for s in (20, 30, 40)]
ON_TIME = [T0 + s for s in (10, 50, 60, 70)]


def _restart(catchup: str) -> tuple[SimResult, str]:
    config = SimConfig(tick_s=1, lookahead_s=5, supervisor_down=[DOWN])
    definition = every(RESTART_INTERVAL, work_s=0.2, catchup=catchup)
    result, job_id = _simulate(config, definition, until=75)
    assert not result.errors
    for rec in _one_per_slot(result, job_id, ON_TIME):
        _ran_once_on_time(result, job_id, rec)
    _never_two_at_once(result, job_id)
    return result, job_id


def test_restart_catchup_latest_runs_the_latest_missed_slot_once() -> None:
    result, job_id = _restart("latest")
    older, latest = (
        _one_per_slot(result, job_id, MISSED[:-1]),
        _one_per_slot(result, job_id, MISSED[-1:])[0],
    )
    table = result.table(job_id)
    assert [r.status for r in older] == ["missed", "missed"], table
    assert latest.status == "completed", table
    assert latest.started_at is not None
    assert latest.started_at >= T0 + DOWN[1] - EPS, table
    assert result.work_calls.get(latest.ex_id) == 1, table


def test_restart_catchup_all_runs_each_missed_slot_one_after_another() -> None:
    result, job_id = _restart("all")
    caught_up = _one_per_slot(result, job_id, MISSED)
    table = result.table(job_id)
    assert [r.status for r in caught_up] == ["completed"] * 3, table
    starts = [r.started_at or 0.0 for r in caught_up]
    assert starts == sorted(starts), f"not in slot order\n{table}"
    assert starts[0] >= T0 + DOWN[1] - EPS, table
    assert all(result.work_calls.get(r.ex_id) == 1 for r in caught_up), table


def test_restart_catchup_none_records_the_missed_slots() -> None:
    result, job_id = _restart("none")
    missed = _one_per_slot(result, job_id, MISSED)
    table = result.table(job_id)
    assert [r.status for r in missed] == ["missed"] * 3, table
    assert all(r.reason == "misfire" for r in missed), table


# ---- lost start messages ---------------------------------------------------------------------
LOST_AT = 5.5  # the start queue dies with every message sent by the ticks at 0..5 s


@pytest.mark.parametrize("lookahead", [30, 60])
def test_runs_whose_start_message_was_lost_start_within_two_ticks(lookahead: int) -> None:
    tick_s, interval = 1, 10
    config = SimConfig(tick_s=tick_s, lookahead_s=lookahead, lose_starts_at=[LOST_AT])
    result, job_id = _simulate(config, every(interval, work_s=0.5), until=100)
    assert not result.errors
    table = result.table(job_id)
    assert result.lost_starts >= 1, table
    for rec in _one_per_slot(result, job_id, _slots(interval, 9)):
        what = f"slot {result.rel(rec.slot)}\n{table}"
        if rec.created > T0 + LOST_AT:
            _ran_once_on_time(result, job_id, rec)
            continue
        assert rec.status == "completed", what
        assert rec.started_at is not None
        assert rec.started_at - rec.slot <= 2 * tick_s + START_WINDOW_S + EPS, what
        assert result.work_calls.get(rec.ex_id) == 1, what
    assert not [r for r in result.records(job_id) if r.status in ("skipped", "missed")], table
    _never_two_at_once(result, job_id)


@pytest.mark.parametrize(
    "down_until, work_s",
    [
        (17.0, 4.0),  # the run of 20 s holds the job's slot first: the stale one is missed
        (16.0, 5.0),  # the stale one runs first (16..21): the run of 20 s waits for it
    ],
)
def test_a_stale_run_contending_with_the_on_time_slot_never_has_it_skipped(
    down_until: float, work_s: float
) -> None:
    """The slot at 10 s: its run was created ahead, its start lost with the queue at 5.5 s,
    and the supervisor was down until 16 or 17 s; re-sent by the first sweep, it starts more than
    5 s late: a missed slot, which `latest` keeps as a catch-up run unless a later slot is
    due or already holds the job's slot (the run of 20 s, claimed ahead), which is then the
    latest. Runs take 4-5 s: whichever order the two come in, neither is skipped for an
    overlap, they never run at once, and the slot at 30 s runs on time."""
    config = SimConfig(
        tick_s=1, lookahead_s=5, lose_starts_at=[LOST_AT], supervisor_down=[(6.0, down_until)]
    )
    result, job_id = _simulate(config, every(RESTART_INTERVAL, work_s=work_s), until=45)
    assert not result.errors
    table = result.table(job_id)
    stale, on_time, after = _one_per_slot(result, job_id, _slots(RESTART_INTERVAL, 3))
    assert result.lost_starts >= 1, table
    assert (stale.status, stale.reason) in {("completed", None), ("missed", "misfire")}, table
    assert on_time.status == "completed" and result.work_calls.get(on_time.ex_id) == 1, table
    _ran_once_on_time(result, job_id, after)
    assert not [r for r in result.records(job_id) if r.status == "skipped"], table
    _never_two_at_once(result, job_id)
