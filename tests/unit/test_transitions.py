"""The transition tables: properties of the pure machines (no store involved)."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.errors import IllegalTransition
from chalicelib.domain.transitions import (
    ACTIVE_EX,
    EX_MACHINE,
    JOB_MACHINE,
    MACHINES,
    SLICE_MACHINE,
    SUPERVISOR_MACHINE,
    TERMINAL_EX,
    ExStatus,
    JobState,
    Machine,
    SliceState,
    SupervisorState,
    apply,
)

ENUMS = {"job": JobState, "execution": ExStatus, "slice": SliceState, "supervisor": SupervisorState}


@pytest.mark.parametrize("machine", list(MACHINES.values()), ids=list(MACHINES))
def test_every_state_of_the_design_is_in_its_table(machine: Machine) -> None:
    assert machine.states == {str(s) for s in ENUMS[machine.name]}
    for targets in machine.arrows.values():
        assert targets <= machine.states


def test_terminal_statuses_have_no_way_out_and_every_active_one_can_end() -> None:
    for s in TERMINAL_EX:
        assert EX_MACHINE.arrows[s] == frozenset()
    for s in ACTIVE_EX:
        assert EX_MACHINE.arrows[s] & TERMINAL_EX, s


def test_finished_slices_stay_finished() -> None:
    for s in (SliceState.completed, SliceState.error):
        assert SLICE_MACHINE.arrows[s] == frozenset()


def test_expired_jobs_and_supervisor_restart() -> None:
    assert JOB_MACHINE.arrows[JobState.EXPIRED] == frozenset()
    assert SUPERVISOR_MACHINE.allows(SupervisorState.HALTED, SupervisorState.RUNNING)


@st.composite
def walks(draw: st.DrawFn) -> tuple[Machine, str, list[str]]:
    machine = draw(st.sampled_from(list(MACHINES.values())))
    states = sorted(machine.states)
    start = draw(st.sampled_from(states))
    return machine, start, draw(st.lists(st.sampled_from(states), max_size=30))


@given(walks())
def test_apply_never_takes_an_arrow_that_is_not_in_the_table(
    walk: tuple[Machine, str, list[str]],
) -> None:
    machine, state, targets = walk
    path = [state]
    for target in targets:
        try:
            state = apply(machine, state, target)
        except IllegalTransition as err:
            assert not machine.allows(path[-1], target)
            assert (err.current, err.target) == (path[-1], target)
            continue
        assert machine.allows(path[-1], state)
        path.append(state)
    for a, b in pairwise(path):
        assert b in machine.arrows[a]


@given(st.sampled_from(list(MACHINES.values())), st.data())
def test_sources_for_is_the_inverse_of_the_table(machine: Machine, data: st.DataObject) -> None:
    target = data.draw(st.sampled_from(sorted(machine.states)))
    sources = machine.sources_for(target)
    for s in machine.states:
        assert (s in sources) == machine.allows(s, target)
