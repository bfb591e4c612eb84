"""OpenSpecimen's statuses and dates over Cadenza's, and the page tokens: pure pieces."""

from __future__ import annotations

from typing import TypedDict

import pytest

from chalicelib.adapters.dynamodb.paging import decode_cursor, encode_cursor
from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.history import (
    EXECUTED,
    GROUP_STATUSES,
    LEDGER,
    RunCounts,
    RunGroup,
    Window,
    group_of,
    parse_date,
    parse_group,
    parse_max_results,
    parse_state,
)
from chalicelib.domain.transitions import ACTIVE_EX, TERMINAL_EX, ExStatus, JobState
from tests.typed import field_errors

DAY = 1_645_401_600.0  # 2022-02-21T00:00:00Z


def test_every_execution_status_has_exactly_one_openspecimen_status() -> None:
    seen = [s for statuses in GROUP_STATUSES.values() for s in statuses]
    assert sorted(seen) == sorted(ExStatus) and len(seen) == len(set(seen))
    assert GROUP_STATUSES[RunGroup.IN_PROGRESS] == ACTIVE_EX
    executed = set().union(*(GROUP_STATUSES[g] for g in EXECUTED))
    ledger = set().union(*(GROUP_STATUSES[g] for g in LEDGER))
    assert ledger == {ExStatus.skipped, ExStatus.missed} and not executed & ledger
    assert executed | ledger == set(ExStatus)
    assert {s for s in TERMINAL_EX if group_of(s) == RunGroup.FAILED} == {
        ExStatus.failed,
        ExStatus.rejected,
        ExStatus.terminated,
        ExStatus.stopped,
    }
    assert group_of(ExStatus.completed) == RunGroup.SUCCEEDED
    assert group_of(ExStatus.stopping) == RunGroup.IN_PROGRESS


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("20220221", DAY),
        ("20220221T061500", DAY + 6 * 3600 + 15 * 60),
        ("20220221T000000", DAY),
        (" 20220221 ", DAY),
        (None, None),
        ("", None),
    ],
)
def test_openspecimen_dates(raw: str | None, expected: float | None) -> None:
    assert parse_date("fromDate", raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["2022-02-21", "20220230", "20220221T240000", "20220221T0615", "202202211", "20220221Z", "x"],
)
def test_other_dates_are_refused_naming_the_field_and_the_forms(raw: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_date("toDate", raw)
    assert err.value.details["errors"] == [
        {"field": "toDate", "reason": err.value.message.removeprefix("toDate: ")}
    ]
    assert "YYYYMMDD" in err.value.message and "YYYYMMDDTHHMMSS" in err.value.message


def test_window_defaults_and_order() -> None:
    assert Window.parse(None, None, now=DAY) == Window(None, DAY)
    assert Window.parse("20220221", "20220221", now=0) == Window(DAY, DAY)
    with pytest.raises(InvalidInput) as err:
        Window.parse("20220222", "20220221", now=DAY)
    assert [e["field"] for e in field_errors(err.value)] == ["fromDate", "toDate"]
    # without toDate, a fromDate after now is a window with no run yet, not an error
    assert Window.parse("20220222", None, now=DAY) == Window(DAY + 86400, DAY + 86400)


def test_status_state_and_page_size_values() -> None:
    assert parse_group("failed") == RunGroup.FAILED and parse_group(None) is None
    assert parse_state("suspended") == JobState.SUSPENDED and parse_state("") is None
    assert parse_max_results(None) == 100 and parse_max_results("1000") == 1000
    for bad, parse in (("done", parse_group), ("paused", parse_state)):
        with pytest.raises(InvalidInput):
            parse(bad)
    for bad in ("0", "1001", "-1", "1.5", "x"):
        with pytest.raises(InvalidInput):
            parse_max_results(bad)


def test_counts_by_group() -> None:
    counts = RunCounts({ExStatus.running: 2, ExStatus.stopped: 1, ExStatus.missed: 3})
    counts.add(RunCounts({ExStatus.running: 1, ExStatus.completed: 4}))
    assert counts.total == 11
    assert counts.by_group == {
        RunGroup.IN_PROGRESS: 3,
        RunGroup.SUCCEEDED: 4,
        RunGroup.FAILED: 1,
        RunGroup.SKIPPED: 0,
        RunGroup.MISSED: 3,
    }


KEY = {"job_id": {"S": "j1"}, "slot": {"S": "2027-01-15T08:00:00Z"}, "created": {"N": "100.5"}}
NAMES = frozenset(KEY)


def test_tokens_round_trip_and_are_url_safe() -> None:
    token = encode_cursor(KEY)
    assert token is not None and set(token) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    assert decode_cursor(token, names=NAMES, fixed={"job_id": "j1"}) == KEY
    assert decode_cursor(token, names=NAMES, fixed={}, number="created", lo=100.5, hi=100.5)
    assert encode_cursor(None) is None and decode_cursor(None, names=NAMES, fixed={}) is None


class _Bounds(TypedDict, total=False):
    number: str
    lo: float
    hi: float


@pytest.mark.parametrize(
    "token, kw",
    [
        ("%%%", {}),
        ("bm90IGpzb24", {}),  # "not json"
        (encode_cursor({"job_id": {"S": "j1"}}), {}),
        (encode_cursor({**KEY, "job_id": {"N": 5}}), {}),
        (encode_cursor({**KEY, "job_id": {"S": "j2"}}), {}),
        (encode_cursor({**KEY, "created": {"S": "x"}}), {"number": "created"}),
        (encode_cursor(KEY), {"number": "created", "lo": 101.0}),
        (encode_cursor(KEY), {"number": "created", "hi": 100.0}),
        ("A" * 3000, {}),
    ],
)
def test_foreign_or_forged_tokens_are_refused_naming_next(token: str, kw: _Bounds) -> None:
    with pytest.raises(InvalidInput) as err:
        decode_cursor(token, names=NAMES, fixed={"job_id": "j1"}, **kw)
    assert [e["field"] for e in field_errors(err.value)] == ["next"]
