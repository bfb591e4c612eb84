"""The pure scheduling policies: properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.policies import jitter, miss_reason, split_missed
from chalicelib.domain.runs import MissReason

slots = st.lists(st.integers(0, 10_000), max_size=50, unique=True).map(sorted)


@given(
    slots,
    st.sampled_from(["none", "latest", "all"]),
    st.integers(1, 20),
    st.booleans(),
    st.booleans(),
)
def test_every_missed_slot_is_either_ledgered_or_run_once_in_order(
    missed: list[float], catchup: str, max_catchup: int, complete: bool, next_due: bool
) -> None:
    ledger, run = split_missed(missed, catchup, max_catchup, complete, next_due)  # type: ignore[arg-type]
    assert ledger + run == missed  # nothing lost, nothing doubled, order kept
    if not complete or catchup == "none" or (catchup == "latest" and next_due):
        assert run == []
    elif catchup == "latest":
        assert run == missed[-1:]
    else:
        assert run == missed[-max_catchup:] if missed else run == []


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
