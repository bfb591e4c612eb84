"""The pure scheduling policies: properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.jobs import JobDefinition
from chalicelib.domain.policies import catch_up, jitter, miss_reason
from chalicelib.domain.runs import CATCHUP_RECHECK_S, MissReason, Run
from chalicelib.domain.transitions import ExStatus

slots = st.lists(st.integers(0, 10_000), max_size=50, unique=True).map(sorted)
NOW = 10_010


@given(
    slots,
    st.sampled_from(["none", "latest", "all"]),
    st.integers(1, 20),
    st.integers(0, 12_000),
    st.booleans(),
    st.booleans(),
)
def test_every_missed_slot_is_either_ledgered_or_run_once_in_order(
    late: list[float], catchup: str, max_catchup: int, grace: int, complete: bool, due: bool
) -> None:
    spec = JobDefinition.model_validate(
        {
            "name": "p",
            "operations": [{"_op": "noop"}],
            "catchup": catchup,
            "max_catchup": max_catchup,
            "misfire_grace_seconds": grace,
        }
    )
    on_time = [NOW] if due else [NOW + 30]
    ledger, run = catch_up(late, on_time, NOW, spec, complete)
    assert sorted(ledger + run) == late and not set(ledger) & set(run)  # none lost or doubled
    assert run == sorted(run) and all(s >= NOW - grace for s in run)  # never past the grace
    within = [s for s in late if s >= NOW - grace]
    if not complete or catchup == "none" or (catchup == "latest" and due):
        assert run == []
    elif catchup == "latest":
        assert run == within[-1:]
    else:
        assert run == within[-max_catchup:]


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 10_000))
def test_reasons(slot: int, a: int, b: int) -> None:
    lo, hi = min(a, b), max(a, b)
    inside = lo <= slot < hi
    assert (miss_reason(slot, lo, hi, None, None) == MissReason.suspended) == inside
    assert (miss_reason(slot, None, None, lo, hi) == MissReason.halted) == inside
    assert miss_reason(slot, None, None, None, None) == MissReason.misfire
    # still suspended (no resumption after the suspension)
    assert miss_reason(slot, lo, None, None, None) == (
        MissReason.suspended if slot >= lo else MissReason.misfire
    )


@given(st.text(max_size=20), st.integers(0, 10**9), st.integers(0, 3600))
def test_jitter_is_stable_and_bounded(job_id: str, slot: int, spread: int) -> None:
    j = jitter(job_id, slot, spread)
    assert 0 <= j <= spread and j == jitter(job_id, slot, spread)


@given(
    st.floats(0, 10_000),
    st.integers(0, 600),
    st.integers(1, 600),
    st.booleans(),
    st.sampled_from([ExStatus.pending, ExStatus.running]),
)
def test_a_waiting_catch_up_run_is_looked_at_often_within_its_grace_else_a_lease_later(
    waited: float, grace: int, lease: int, catchup: bool, status: ExStatus
) -> None:
    config = {"misfire_grace_seconds": grace, "lease_seconds": lease}
    run = Run("j", "s", "e", scheduled_start=0.0, config=config, status=status, catchup=catchup)
    after = run.recheck_after(waited)
    if catchup and status == ExStatus.pending and waited <= grace:
        assert after == min(lease, CATCHUP_RECHECK_S)
    else:
        assert after == lease
    assert run.bump(waited).sets["check_at"] == waited + after
