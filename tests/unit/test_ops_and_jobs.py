"""The operation registry and job-definition validation: pure, no store."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.domain.errors import InvalidInput
from chalicelib.ops.registry import (
    OpFailed,
    SliceContext,
    process,
    slice_requests,
    validate_operations,
)
from chalicelib.services.jobs import parse_definition
from tests.typed import field_errors


def ctx(order: int = 0, attempt: int = 1, ex_id: str = "ex") -> SliceContext:
    return SliceContext(ex_id=ex_id, job_id="job", order=order, attempt=attempt, args=None)


def test_noop_reader_makes_one_slice() -> None:
    assert slice_requests([{"_op": "noop"}], None) == [{}]


@given(st.integers(0, 500), st.integers(0, 500), st.integers(1, 50))
def test_range_slices_cover_the_range_exactly_once(start: int, length: int, size: int) -> None:
    end = start + length
    slices = slice_requests([{"_op": "range", "start": start, "end": end, "size": size}], None)
    covered = [i for s in slices for i in range(s["start"], s["end"])]
    assert covered == list(range(start, end))
    assert all(0 < s["end"] - s["start"] <= size for s in slices)


def test_processors_chain_and_fail_deterministically() -> None:
    ops: list[dict[str, Any]] = [{"_op": "noop"}, {"_op": "noop"}, {"_op": "fail", "slices": [2]}]
    assert process(ops, {"x": 1}, ctx(order=1)) == {"x": 1}
    with pytest.raises(OpFailed):
        process(ops, {}, ctx(order=2))
    once: list[dict[str, Any]] = [{"_op": "noop"}, {"_op": "fail", "slices": [0], "times": 1}]
    with pytest.raises(OpFailed):
        process(once, {}, ctx(attempt=1))
    assert process(once, {}, ctx(attempt=2)) == {}


@pytest.mark.parametrize("extra", [{}, {"times": 1}, {"message": "m"}])
def test_a_bare_fail_op_fails_every_slice(extra: dict[str, Any]) -> None:
    ops: list[dict[str, Any]] = [{"_op": "noop"}, {"_op": "fail", **extra}]
    for order in range(20):
        with pytest.raises(OpFailed):
            process(ops, {}, ctx(order=order))
    chosen: list[dict[str, Any]] = [{"_op": "noop"}, {"_op": "fail", "slices": [], **extra}]
    assert process(chosen, {}, ctx(order=3)) == {}


def test_fail_fraction_is_deterministic_and_close_to_the_fraction() -> None:
    ops: list[dict[str, Any]] = [{"_op": "noop"}, {"_op": "fail", "fraction": 0.25}]

    def fails(order: int) -> bool:
        try:
            process(ops, {}, ctx(order=order, ex_id="fixed"))
            return False
        except OpFailed:
            return True

    first = [fails(i) for i in range(2000)]
    assert first == [fails(i) for i in range(2000)]
    assert 0.2 < sum(first) / 2000 < 0.3


@pytest.mark.parametrize(
    "ops, field",
    [
        ([{"_op": "sleep"}], "operations[0]._op"),  # not a reader
        ([{"_op": "noop"}, {"_op": "range", "end": 3}], "operations[1]._op"),  # not a processor
        ([{"_op": "range"}], "operations[0].end"),
        ([{"_op": "range", "end": 3, "size": 0}], "operations[0].size"),
        ([{"_op": "noop"}, {"_op": "sleep", "seconds": -1}], "operations[1].seconds"),
        ([{"_op": "noop"}, {"_op": "fail", "fraction": 2}], "operations[1].fraction"),
        ([{"_op": "noop", "typo": 1}], "operations[0].typo"),
    ],
)
def test_bad_operations_name_the_field(ops: list[dict[str, Any]], field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_operations(ops)
    assert field in [e["field"] for e in field_errors(exc.value)]


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "op, field, says",
    [
        ({"_op": "sleep", "seconds": True}, "seconds", "number"),
        ({"_op": "sleep", "seconds": NAN}, "seconds", "not a number"),
        ({"_op": "sleep", "seconds": INF}, "seconds", "not a number"),
        ({"_op": "fail", "fraction": NAN}, "fraction", "not a number"),
        ({"_op": "fail", "slices": [True]}, "slices.0", "valid integer"),
        ({"_op": "fail", "times": "2"}, "times", "valid integer"),
    ],
)
def test_processor_parameters_are_strict(op: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_operations([{"_op": "noop"}, op])
    [error] = field_errors(exc.value)
    assert error["field"] == f"operations[1].{field}" and says in error["reason"], error


@pytest.mark.parametrize("end", [True, "3", 3.0])
def test_reader_parameters_are_strict(end: object) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_operations([{"_op": "range", "end": end}])
    [error] = field_errors(exc.value)
    assert error["field"] == "operations[0].end" and "valid integer" in error["reason"], error


@pytest.mark.parametrize(
    "extra, field",
    [
        ({"workers": True}, "workers"),
        ({"workers": "2"}, "workers"),
        ({"max_retries": 1.0}, "max_retries"),
        ({"analytics": 1}, "analytics"),
        ({"schedule": {"interval_seconds": True}}, "schedule.interval_seconds"),
        ({"max_active_runs": 2}, "max_active_runs"),
        ({"overlap": "buffer_one", "max_active_runs": 3}, "max_active_runs"),
    ],
)
def test_definition_fields_are_strict_and_named(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_definition({"name": "n", "operations": [{"_op": "noop"}], **extra})
    assert [e["field"] for e in field_errors(exc.value)] == [field]


def test_definition_defaults_and_round_trip() -> None:
    spec = parse_definition({"name": "n", "operations": [{"_op": "noop"}]})
    d = spec.to_dict()
    assert (d["workers"], d["max_retries"], d["lease_seconds"], d["lifecycle"]) == (
        1,
        3,
        60,
        "once",
    )
    assert d["operations"] == [{"_op": "noop"}] and d["schedule"] is None
    assert parse_definition(d).to_dict() == d


@pytest.mark.parametrize("payload", [None, [], "job", 3])
def test_non_object_bodies_are_refused(payload: object) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_definition(payload)
    assert field_errors(exc.value)[0]["field"] == "body"


def test_blank_name_is_refused() -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_definition({"name": "   ", "operations": [{"_op": "noop"}]})
    assert field_errors(exc.value)[0]["field"] == "name"


def test_a_slices_idempotency_key_is_its_job_slot_and_order_whatever_the_attempt() -> None:
    first = SliceContext(ex_id="e1", job_id="j", order=3, attempt=1, args=None, slot="s")
    again = SliceContext(ex_id="e1", job_id="j", order=3, attempt=4, args="x", slot="s")
    other_slice = SliceContext(ex_id="e1", job_id="j", order=4, attempt=1, args=None, slot="s")
    other_slot = SliceContext(ex_id="e2", job_id="j", order=3, attempt=1, args=None, slot="t")
    assert first.idempotency_key == again.idempotency_key
    assert len(first.idempotency_key) == 32
    assert first.idempotency_key not in {other_slice.idempotency_key, other_slot.idempotency_key}
