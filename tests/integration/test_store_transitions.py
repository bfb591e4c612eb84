"""Property: whatever transitions are attempted against the store, the stored execution
status only ever moves along arrows of the execution table (the condition is the table)."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.bootstrap import Container
from chalicelib.domain.runs import Guard, Run, RunTransition
from chalicelib.domain.transitions import EX_MACHINE, TERMINAL_EX, ExStatus

STATUSES = sorted(ExStatus, key=str)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    attempts=st.lists(
        st.tuples(st.sampled_from(STATUSES), st.lists(st.sampled_from(STATUSES), min_size=1)),
        min_size=1,
        max_size=12,
    )
)
def test_stored_status_follows_the_table(
    container: Container, attempts: list[tuple[ExStatus, list[ExStatus]]]
) -> None:
    store = container.store
    run = Run(
        job_id=str(uuid.uuid4()),
        slot="2027-01-01T00:00:00Z",
        ex_id=str(uuid.uuid4()),
        scheduled_start=0.0,
        config={"operations": []},
        check_at=1.0,
    )
    assert store.create_run(run)
    current = ExStatus.pending
    for target, claimed_sources in attempts:
        # a caller may claim any set of sources; the store still only applies table arrows
        guard = Guard(frozenset(claimed_sources))
        out = store.apply_run(run, RunTransition(guard, target))
        stored = store.get_run(run.job_id, run.slot)
        assert stored is not None
        if out is None:
            assert stored.status == current
        else:
            assert stored.status == target
            assert EX_MACHINE.allows(current, target) or (
                current == target and target not in TERMINAL_EX
            )
            assert current in claimed_sources
            current = target
