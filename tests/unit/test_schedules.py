"""Schedules: parsing, validation errors, DST rules, windows, and slot-sequence properties."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from chalicelib.domain.schedules import Schedule

NY = "America/New_York"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def slots(s: Schedule, after: datetime, n: int, anchor: datetime = T0) -> list[datetime]:
    out: list[datetime] = []
    t: datetime | None = after
    while len(out) < n:
        assert t is not None
        t = s.next_fire_after(t, anchor)
        if t is None:
            break
        out.append(t)
    return out


def local(s: Schedule, ts: list[datetime]) -> list[str]:
    return [t.astimezone(ZoneInfo(s.timezone)).strftime("%Y-%m-%d %H:%M %Z") for t in ts]


def errors(**kwargs: Any) -> list[ErrorDetails]:
    with pytest.raises(ValidationError) as info:
        Schedule(**kwargs)
    return info.value.errors(include_url=False)


# --- kinds ---------------------------------------------------------------------------


def test_standard_cron() -> None:
    s = Schedule(cron="*/5 * * * *")
    assert s.kind == "cron"
    assert slots(s, utc(2026, 1, 1, 0, 2, 30), 3) == [
        utc(2026, 1, 1, 0, 5),
        utc(2026, 1, 1, 0, 10),
        utc(2026, 1, 1, 0, 15),
    ]
    assert s.next_fire_after(utc(2026, 1, 1, 0, 5), T0) == utc(2026, 1, 1, 0, 10)


def test_standard_cron_day_or_semantics() -> None:
    # Both day fields restricted: Debian cron runs on either (the 1st, or any Monday).
    s = Schedule(cron="0 9 1 * MON")
    assert slots(s, utc(2026, 3, 1, 10), 3) == [
        utc(2026, 3, 2, 9),
        utc(2026, 3, 9, 9),
        utc(2026, 3, 16, 9),
    ]
    assert utc(2026, 4, 1, 9) in slots(s, utc(2026, 3, 25), 3)


def test_result_is_utc_whole_seconds() -> None:
    s = Schedule(cron="0 12 * * *", timezone="Asia/Kolkata")
    got = s.next_fire_after(datetime(2026, 5, 1, 3, 0, 0, 999_999, tzinfo=UTC), T0)
    assert got == utc(2026, 5, 1, 6, 30)
    assert got is not None and got.tzinfo == UTC and got.microsecond == 0


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        # MON-FRI by name and by AWS number (1-7 = SUN-SAT).
        ("cron(0 12 ? * MON-FRI *)", utc(2026, 3, 7), [utc(2026, 3, 9, 12), utc(2026, 3, 10, 12)]),
        ("cron(0 12 ? * 2-6 *)", utc(2026, 3, 7), [utc(2026, 3, 9, 12), utc(2026, 3, 10, 12)]),
        ("cron(0 12 ? * 1 *)", utc(2026, 3, 2), [utc(2026, 3, 8, 12), utc(2026, 3, 15, 12)]),
        (
            "cron(0 12 ? * 2/2 *)",
            utc(2026, 3, 8),
            [utc(2026, 3, 9, 12), utc(2026, 3, 11, 12), utc(2026, 3, 13, 12), utc(2026, 3, 16, 12)],
        ),
        ("cron(0/15 9 * * ? *)", utc(2026, 3, 1), [utc(2026, 3, 1, 9, m) for m in (0, 15, 30, 45)]),
        ("cron(0 9 L * ? *)", utc(2026, 2, 1), [utc(2026, 2, 28, 9), utc(2026, 3, 31, 9)]),
        # LW: the last weekday; 2026-02-28 is a Saturday, 2026-05-31 a Sunday.
        ("cron(0 9 LW * ? *)", utc(2026, 2, 1), [utc(2026, 2, 27, 9), utc(2026, 3, 31, 9)]),
        ("cron(0 9 LW 5 ? *)", utc(2026, 1, 1), [utc(2026, 5, 29, 9)]),
        # nW: the weekday nearest day n, staying in the month.
        ("cron(0 9 15W * ? *)", utc(2026, 2, 1), [utc(2026, 2, 16, 9), utc(2026, 3, 16, 9)]),
        ("cron(0 9 15W 8 ? *)", utc(2026, 1, 1), [utc(2026, 8, 14, 9)]),
        ("cron(0 9 1W 8 ? *)", utc(2026, 1, 1), [utc(2026, 8, 3, 9)]),
        ("cron(0 9 31W * ? *)", utc(2026, 4, 1), [utc(2026, 5, 29, 9), utc(2026, 7, 31, 9)]),
        # n#k: the k-th such weekday of the month; nL: the last one; L alone: Saturday.
        ("cron(0 10 ? * 3#2 *)", utc(2026, 3, 1), [utc(2026, 3, 10, 10), utc(2026, 4, 14, 10)]),
        ("cron(0 10 ? * TUE#2 *)", utc(2026, 3, 1), [utc(2026, 3, 10, 10), utc(2026, 4, 14, 10)]),
        ("cron(0 10 ? * 6L *)", utc(2026, 3, 1), [utc(2026, 3, 27, 10), utc(2026, 4, 24, 10)]),
        ("cron(0 10 ? * FRIL *)", utc(2026, 3, 1), [utc(2026, 3, 27, 10)]),
        ("cron(0 10 ? * L *)", utc(2026, 3, 1), [utc(2026, 3, 7, 10), utc(2026, 3, 14, 10)]),
        # Year field: filtered by Cadenza, cronsim never sees it.
        ("cron(0 0 1 1 ? 2028)", utc(2026, 5, 1), [utc(2028, 1, 1)]),
        (
            "cron(0 0 1 1 ? 2027-2031/2)",
            utc(2026, 5, 1),
            [utc(2027, 1, 1), utc(2029, 1, 1), utc(2031, 1, 1)],
        ),
        (
            "cron(0 0 1 JAN,JUL ? 2027,2030)",
            utc(2026, 5, 1),
            [utc(2027, 1, 1), utc(2027, 7, 1), utc(2030, 1, 1), utc(2030, 7, 1)],
        ),
        ("cron(0 0 1 1 ? 2020)", utc(2026, 5, 1), []),
        (
            "cron(*/30 * * * ? *)",
            utc(2026, 3, 1, 0, 10),
            [utc(2026, 3, 1, 0, 30), utc(2026, 3, 1, 1)],
        ),
    ],
)
def test_aws_cron_form(cron: str, after: datetime, expected: list[datetime]) -> None:
    assert slots(Schedule(cron=cron), after, len(expected)) == expected


def test_aws_year_field_runs_out() -> None:
    s = Schedule(cron="cron(0 0 1 1 ? 2027-2031/2)")
    assert s.next_fire_after(utc(2031, 1, 1), T0) is None
    assert s.is_expired(utc(2031, 1, 1)) and not s.is_expired(utc(2030, 12, 31))


def test_aws_cron_is_case_insensitive() -> None:
    a = Schedule(cron="cron(0 12 ? * mon-fri *)")
    b = Schedule(cron="CRON(0 12 ? * MON-FRI *)")
    assert slots(a, T0, 5) == slots(b, T0, 5)


def test_rate() -> None:
    s = Schedule(rate="rate(5 minutes)")
    assert s.kind == "rate" and s.period_seconds == 300
    anchor = datetime(2026, 1, 1, 12, 0, 0, 700_000, tzinfo=UTC)
    assert s.next_fire_after(anchor, anchor) == utc(2026, 1, 1, 12, 5)
    assert s.next_fire_after(utc(2026, 1, 1, 11), anchor) == utc(2026, 1, 1, 12, 5)
    assert s.next_fire_after(utc(2026, 1, 1, 12, 5), anchor) == utc(2026, 1, 1, 12, 10)
    assert s.next_fire_after(utc(2026, 1, 1, 12, 7, 31), anchor) == utc(2026, 1, 1, 12, 10)


@pytest.mark.parametrize(
    ("rate", "seconds"),
    [
        ("rate(1 second)", 1),
        ("rate(10 seconds)", 10),
        ("rate(1 minute)", 60),
        ("rate(1 hour)", 3600),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("rate(3 days)", 3 * 86400),
        (" rate( 5  minutes ) ", 300),
    ],
)
def test_rate_units(rate: str, seconds: int) -> None:
    assert Schedule(rate=rate).period_seconds == seconds


def test_interval() -> None:
    s = Schedule(interval_seconds=90)
    assert s.kind == "interval" and s.period_seconds == 90
    assert slots(s, T0, 2, anchor=T0) == [utc(2026, 1, 1, 0, 1, 30), utc(2026, 1, 1, 0, 3)]


def test_rate_is_absolute_across_dst() -> None:
    s = Schedule(rate="rate(1 day)", timezone=NY, start_at=datetime(2026, 3, 7, 12))
    got = slots(s, utc(2026, 3, 1), 3)
    assert got == [utc(2026, 3, 7, 17), utc(2026, 3, 8, 17), utc(2026, 3, 9, 17)]
    assert local(s, got) == ["2026-03-07 12:00 EST", "2026-03-08 13:00 EDT", "2026-03-09 13:00 EDT"]


def test_start_at_sets_the_rate_phase_and_anchor_is_ignored() -> None:
    s = Schedule(interval_seconds=300, start_at=utc(2026, 1, 1, 13))
    for anchor in (utc(2026, 1, 1, 12, 1, 7), utc(2020, 1, 1)):
        assert s.next_fire_after(utc(2026, 1, 1, 12), anchor) == utc(2026, 1, 1, 13)
        assert s.next_fire_after(utc(2026, 1, 1, 13), anchor) == utc(2026, 1, 1, 13, 5)
        assert s.next_fire_after(utc(2026, 1, 1, 13, 7), anchor) == utc(2026, 1, 1, 13, 10)


@pytest.mark.parametrize(
    ("at", "zone", "expected"),
    [
        ("at(2026-11-22T10:00:00)", NY, utc(2026, 11, 22, 15)),
        ("at(2026-11-22T10:00:00)", "UTC", utc(2026, 11, 22, 10)),
        ("2026-11-22T10:00:00", "Europe/Paris", utc(2026, 11, 22, 9)),
        ("2026-11-22 10:00", "Europe/Paris", utc(2026, 11, 22, 9)),
        ("2026-11-22T10:00:00Z", NY, utc(2026, 11, 22, 10)),
        ("2026-11-22T10:00:00+02:00", NY, utc(2026, 11, 22, 8)),
        # In the spring-forward gap: the first instant after it; in the repeated hour: the first.
        ("at(2026-03-08T02:30:00)", NY, utc(2026, 3, 8, 7)),
        ("at(2026-11-01T01:30:00)", NY, utc(2026, 11, 1, 5, 30)),
    ],
)
def test_at(at: str, zone: str, expected: datetime) -> None:
    s = Schedule(at=at, timezone=zone)
    assert s.kind == "at"
    assert s.next_fire_after(utc(2026, 1, 1), T0) == expected
    assert s.next_fire_after(expected - timedelta(seconds=1), T0) == expected
    assert s.next_fire_after(expected, T0) is None
    assert not s.is_expired(expected - timedelta(microseconds=1))
    assert s.is_expired(expected)


# --- time zones and DST ----------------------------------------------------------------


def test_spring_forward_gap_runs_once_at_the_end_of_the_gap() -> None:
    s = Schedule(cron="30 2 * * *", timezone=NY)
    got = slots(s, utc(2026, 3, 6, 12), 3)
    assert local(s, got) == ["2026-03-07 02:30 EST", "2026-03-08 03:00 EDT", "2026-03-09 02:30 EDT"]
    assert got[1] == utc(2026, 3, 8, 7)


def test_fall_back_repeated_hour_runs_once_at_the_first_occurrence() -> None:
    s = Schedule(cron="30 1 * * *", timezone=NY)
    got = slots(s, utc(2026, 10, 31, 12), 2)
    assert got == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    assert local(s, got) == ["2026-11-01 01:30 EDT", "2026-11-02 01:30 EST"]


def test_aws_form_follows_the_same_dst_rules() -> None:
    s = Schedule(cron="cron(30 2 * * ? *)", timezone=NY)
    assert s.next_fire_after(utc(2026, 3, 8), T0) == utc(2026, 3, 8, 7)
    s = Schedule(cron="cron(30 1 * * ? *)", timezone=NY)
    assert slots(s, utc(2026, 11, 1), 2) == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_sub_hourly_cron_across_dst() -> None:
    # cronsim alone skips the gap for such expressions and runs the repeated hour twice.
    s = Schedule(cron="*/20 * * * *", timezone=NY)
    spring = slots(s, utc(2026, 3, 8, 6, 30), 3)
    assert local(s, spring) == [
        "2026-03-08 01:40 EST",
        "2026-03-08 03:00 EDT",
        "2026-03-08 03:20 EDT",
    ]
    fall = slots(s, utc(2026, 11, 1, 5, 30), 3)
    assert local(s, fall) == [
        "2026-11-01 01:40 EDT",
        "2026-11-01 02:00 EST",
        "2026-11-01 02:20 EST",
    ]
    # Asked from inside the repeated hour's second pass: the slots there already ran.
    assert s.next_fire_after(utc(2026, 11, 1, 6, 10), T0) == utc(2026, 11, 1, 7)


def test_gap_slots_collapse_into_one() -> None:
    s = Schedule(cron="0,30 2,3 * * *", timezone=NY)
    got = slots(s, utc(2026, 3, 8), 3)
    assert local(s, got) == ["2026-03-08 03:00 EDT", "2026-03-08 03:30 EDT", "2026-03-09 02:00 EDT"]
    hourly = Schedule(cron="0 * * * *", timezone=NY)
    assert local(hourly, slots(hourly, utc(2026, 3, 8, 5, 30), 3)) == [
        "2026-03-08 01:00 EST",
        "2026-03-08 03:00 EDT",
        "2026-03-08 04:00 EDT",
    ]


def test_half_hour_dst_zone() -> None:
    # Lord Howe moves its clocks by 30 minutes: 02:00 -> 02:30 and 02:00 -> 01:30.
    s = Schedule(cron="15 2 * * *", timezone="Australia/Lord_Howe")
    assert local(s, slots(s, utc(2026, 10, 3), 1)) == ["2026-10-04 02:30 +11"]
    s = Schedule(cron="45 1 * * *", timezone="Australia/Lord_Howe")
    assert local(s, slots(s, utc(2026, 4, 4), 2)) == [
        "2026-04-05 01:45 +11",
        "2026-04-06 01:45 +1030",
    ]


def test_skipped_day() -> None:
    # Samoa skipped 2011-12-30 entirely; its slots collapse onto the next midnight.
    s = Schedule(cron="0 */6 * * *", timezone="Pacific/Apia")
    assert local(s, slots(s, utc(2011, 12, 30, 3), 3)) == [
        "2011-12-29 18:00 -10",
        "2011-12-31 00:00 +14",
        "2011-12-31 06:00 +14",
    ]


# --- windows ---------------------------------------------------------------------------


def test_window_is_inclusive() -> None:
    s = Schedule(cron="0 * * * *", start_at=utc(2026, 1, 1, 10), end_at=utc(2026, 1, 1, 12))
    assert slots(s, T0, 5) == [utc(2026, 1, 1, 10), utc(2026, 1, 1, 11), utc(2026, 1, 1, 12)]
    assert not s.is_expired(utc(2026, 1, 1, 11, 59))
    assert s.is_expired(utc(2026, 1, 1, 12))


def test_window_bounds_with_fractions_of_seconds() -> None:
    start = datetime(2026, 1, 1, 10, 0, 0, 500_000, tzinfo=UTC)
    s = Schedule(cron="0 * * * *", start_at=start)
    assert s.next_fire_after(T0, T0) == utc(2026, 1, 1, 11)
    s = Schedule(interval_seconds=60, start_at=start)
    assert s.next_fire_after(T0, T0) == utc(2026, 1, 1, 10, 0, 1)


def test_naive_window_is_local_to_the_time_zone() -> None:
    s = Schedule(
        cron="0 * * * *",
        timezone=NY,
        start_at=datetime(2026, 1, 1, 10),
        end_at="2026-01-01T11:00:00",
    )
    assert slots(s, T0, 5) == [utc(2026, 1, 1, 15), utc(2026, 1, 1, 16)]
    gap = Schedule(interval_seconds=60, timezone=NY, start_at=datetime(2026, 3, 8, 2, 30))
    assert gap.next_fire_after(T0, T0) == utc(2026, 3, 8, 7)


def test_aware_window_keeps_its_own_offset() -> None:
    start = datetime(2026, 1, 1, 10, tzinfo=ZoneInfo("Asia/Tokyo"))
    s = Schedule(cron="0 * * * *", timezone=NY, start_at=start)
    assert s.next_fire_after(T0 - timedelta(days=1), T0) == utc(2026, 1, 1, 1)


def test_at_outside_the_window_never_fires() -> None:
    s = Schedule(at="at(2026-06-01T00:00:00)", end_at=utc(2026, 5, 1))
    assert s.next_fire_after(T0, T0) is None
    assert s.is_expired(T0)
    s = Schedule(at="at(2026-06-01T00:00:00)", start_at=utc(2026, 7, 1))
    assert s.next_fire_after(T0, T0) is None


def test_is_expired() -> None:
    rate = Schedule(rate="rate(5 minutes)", end_at=utc(2026, 1, 1, 0, 7))
    assert not rate.is_expired(utc(2026, 1, 1, 0, 6))
    assert rate.is_expired(utc(2026, 1, 1, 0, 7))
    # With the anchor it can tell that no slot fits in the rest of the window.
    assert rate.is_expired(utc(2026, 1, 1, 0, 5), anchor=T0)
    assert not rate.is_expired(utc(2026, 1, 1, 0, 4), anchor=T0)
    assert not Schedule(cron="* * * * *").is_expired(T0)
    assert Schedule(cron="cron(0 0 1 1 ? 2020-2025)").is_expired(T0)


def test_naive_inputs_are_refused() -> None:
    s = Schedule(rate="rate(1 hour)")
    with pytest.raises(ValueError, match="after"):
        s.next_fire_after(datetime(2026, 1, 1), T0)
    with pytest.raises(ValueError, match="anchor"):
        s.next_fire_after(T0, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="now"):
        s.is_expired(datetime(2026, 1, 1))


def test_beyond_datetime_range_is_none() -> None:
    assert Schedule(cron="* * * * *").next_fire_after(datetime.max.replace(tzinfo=UTC), T0) is None
    far = datetime(9999, 12, 31, 23, 59, 30, tzinfo=UTC)
    assert Schedule(rate="rate(1 minute)").next_fire_after(far, T0) is None
    assert Schedule(cron="* * * * *", timezone="Asia/Tokyo").next_fire_after(far, T0) is None


# --- describe, kind, serialization --------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"cron": "30 2 * * *", "timezone": NY}, "At 02:30 every day (America/New_York)"),
        ({"cron": "cron(0 9 15W * ? *)"}, "cron(0 9 15W * ? *) (UTC)"),
        ({"rate": "rate(1 hour)"}, "every hour"),
        ({"rate": "rate(10 seconds)"}, "every 10 seconds"),
        ({"interval_seconds": 1}, "every second"),
        (
            {"interval_seconds": 90, "end_at": utc(2026, 2, 1)},
            "every 90 seconds, until 2026-02-01T00:00:00+00:00",
        ),
        (
            {"at": "at(2026-11-22T10:00:00)", "timezone": NY},
            "once at 2026-11-22T10:00:00 (America/New_York)",
        ),
        ({"at": "2026-11-22T10:00:00Z"}, "once at 2026-11-22T10:00:00+00:00"),
        (
            {"rate": "rate(2 days)", "start_at": datetime(2026, 1, 1)},
            "every 2 days, from 2026-01-01T00:00:00",
        ),
    ],
)
def test_describe(kwargs: dict[str, Any], text: str) -> None:
    assert Schedule(**kwargs).describe() == text


def test_round_trips_through_json_and_is_frozen() -> None:
    s = Schedule(cron="cron(0 12 ? * MON-FRI *)", timezone=NY, start_at=datetime(2026, 1, 1))
    again = Schedule.model_validate(s.model_dump(mode="json", exclude_none=True))
    assert again == s and hash(again) == hash(s)
    with pytest.raises(ValidationError):
        s.timezone = "UTC"  # type: ignore[misc]


# --- validation errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "loc", "kind", "message"),
    [
        ({}, (), "missing_schedule", "a schedule needs one of cron, rate, at, interval_seconds"),
        (
            {"cron": "* * * * *", "rate": "rate(1 hour)"},
            ("rate",),
            "conflicting_schedule",
            "rate cannot be combined with cron",
        ),
        (
            {"at": "at(2026-01-01T00:00:00)", "interval_seconds": 5},
            ("interval_seconds",),
            "conflicting_schedule",
            "interval_seconds cannot be combined with at",
        ),
        (
            {"cron": "61 * * * *"},
            ("cron",),
            "invalid_cron",
            "invalid cron expression '61 * * * *': bad minute",
        ),
        ({"cron": "* * * *"}, ("cron",), "invalid_cron", "needs 5 fields"),
        ({"cron": "0 0 * * * *"}, ("cron",), "invalid_cron", "needs 5 fields"),
        ({"cron": "@daily"}, ("cron",), "invalid_cron", "needs 5 fields"),
        ({"cron": "0 0 ? * *"}, ("cron",), "invalid_cron", "bad day-of-month"),
        ({"cron": "0 0 30 2 *"}, ("cron",), "invalid_cron", "bad day-of-month"),
        ({"cron": "cron(0 12 * * ?)"}, ("cron",), "invalid_cron", "needs 6 fields"),
        (
            {"cron": "cron(0 12 * * * *)"},
            ("cron",),
            "invalid_cron",
            "exactly one of day-of-month and day-of-week must be '?'",
        ),
        ({"cron": "cron(0 12 ? * ? *)"}, ("cron",), "invalid_cron", "exactly one of day-of-month"),
        (
            {"cron": "cron(0 12 ? * 0 *)"},
            ("cron",),
            "invalid_cron",
            "day-of-week '0' is not 1-7 or SUN-SAT",
        ),
        ({"cron": "cron(0 12 ? * 8 *)"}, ("cron",), "invalid_cron", "day-of-week '8' is not 1-7"),
        ({"cron": "cron(0 12 ? * FRI-MON *)"}, ("cron",), "invalid_cron", "runs backwards"),
        (
            {"cron": "cron(0 12 ? * 2#6 *)"},
            ("cron",),
            "invalid_cron",
            "the number after # must be 1-5",
        ),
        ({"cron": "cron(0 12 ? * */0 *)"}, ("cron",), "invalid_cron", "step '0'"),
        (
            {"cron": "cron(0 12 1-5W * ? *)"},
            ("cron",),
            "invalid_cron",
            "W must follow a single day",
        ),
        ({"cron": "cron(0 12 32W * ? *)"}, ("cron",), "invalid_cron", "is not 1W-31W"),
        (
            {"cron": "cron(0 12 30W 2 ? *)"},
            ("cron",),
            "invalid_cron",
            "never occurs in the chosen months",
        ),
        (
            {"cron": "cron(0 12 * * ? 1969)"},
            ("cron",),
            "invalid_cron",
            "year '1969' is not 1970-2199",
        ),
        (
            {"cron": "cron(0 12 * * ? 2030-2027)"},
            ("cron",),
            "invalid_cron",
            "year range '2030-2027' runs backwards",
        ),
        ({"cron": "cron(0 25 * * ? *)"}, ("cron",), "invalid_cron", "bad hour"),
        (
            {"rate": "rate(0 minutes)"},
            ("rate",),
            "invalid_rate",
            "rate value must be positive, got 0",
        ),
        (
            {"rate": "rate(-5 minutes)"},
            ("rate",),
            "invalid_rate",
            "rate value must be positive, got -5",
        ),
        (
            {"rate": "rate(1.5 hours)"},
            ("rate",),
            "invalid_rate",
            "rate value '1.5' is not a whole number",
        ),
        (
            {"rate": "rate(5 fortnights)"},
            ("rate",),
            "invalid_rate",
            "unknown rate unit 'fortnights'",
        ),
        (
            {"rate": "rate(1 minutes)"},
            ("rate",),
            "invalid_rate",
            "a rate of 1 takes a singular unit: rate(1 minute)",
        ),
        (
            {"rate": "rate(5 minute)"},
            ("rate",),
            "invalid_rate",
            "a rate of 5 takes a plural unit: rate(5 minutes)",
        ),
        ({"rate": "rate(5)"}, ("rate",), "invalid_rate", "must be rate(value unit)"),
        ({"rate": "every 5 minutes"}, ("rate",), "invalid_rate", "must look like rate(5 minutes)"),
        ({"at": "at(2026-13-01T00:00:00)"}, ("at",), "invalid_at", "is not a valid date and time"),
        ({"at": "at(2026-11-22 10:00)"}, ("at",), "invalid_at", "must be at(yyyy-mm-ddThh:mm:ss)"),
        ({"at": "2026-11-22"}, ("at",), "invalid_at", "or an ISO 8601 date-time"),
        ({"at": "tomorrow"}, ("at",), "invalid_at", "or an ISO 8601 date-time"),
        (
            {"at": "2026-11-22T25:00:00Z"},
            ("at",),
            "invalid_at",
            "is not a valid ISO 8601 date-time",
        ),
        ({"at": "2026-11-22T10:00:00.5Z"}, ("at",), "invalid_at", "must be a whole second"),
        (
            {"interval_seconds": 0},
            ("interval_seconds",),
            "invalid_interval",
            "interval_seconds must be at least 1, got 0",
        ),
        ({"interval_seconds": -5}, ("interval_seconds",), "invalid_interval", "at least 1, got -5"),
        (
            {"interval_seconds": 5, "timezone": "Mars/Olympus"},
            ("timezone",),
            "unknown_timezone",
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            {"interval_seconds": 5, "timezone": "America"},
            ("timezone",),
            "unknown_timezone",
            "unknown time zone 'America'",
        ),
        (
            {"interval_seconds": 5, "timezone": "localtime"},
            ("timezone",),
            "unknown_timezone",
            "unknown time zone 'localtime'",
        ),
        (
            {"interval_seconds": 5, "timezone": ""},
            ("timezone",),
            "unknown_timezone",
            "unknown time zone ''",
        ),
        (
            {
                "interval_seconds": 5,
                "start_at": datetime(2026, 1, 2),
                "end_at": datetime(2026, 1, 1),
            },
            ("end_at",),
            "invalid_window",
            "end_at 2026-01-01T00:00:00 is before start_at 2026-01-02T00:00:00",
        ),
        # 10:00 in New York is 15:00 UTC, after the aware end_at.
        (
            {
                "interval_seconds": 5,
                "timezone": NY,
                "start_at": datetime(2026, 1, 1, 10),
                "end_at": utc(2026, 1, 1, 14),
            },
            ("end_at",),
            "invalid_window",
            "is before start_at",
        ),
        (
            {"interval_seconds": 5, "every": 3},
            ("every",),
            "extra_forbidden",
            "Extra inputs are not permitted",
        ),
    ],
)
def test_validation_errors(
    kwargs: dict[str, Any], loc: tuple[str, ...], kind: str, message: str
) -> None:
    errs = errors(**kwargs)
    assert len(errs) == 1, errs
    assert errs[0]["loc"] == loc
    assert errs[0]["type"] == kind
    assert message in errs[0]["msg"]


def test_several_errors_are_reported_together() -> None:
    errs = errors(rate="rate(1 hours)", timezone="Mars/Olympus")
    assert [e["loc"] for e in errs] == [("rate",), ("timezone",)]


def test_window_order_allows_equal_bounds() -> None:
    assert (
        Schedule(at="at(2026-01-01T00:00:00)", start_at=T0, end_at=T0).next_fire_after(
            T0 - timedelta(days=1), T0
        )
        == T0
    )


def test_errors_nest_under_the_parent_field() -> None:
    class Holder(BaseModel):
        schedule: Schedule

    with pytest.raises(ValidationError) as info:
        Holder.model_validate({"schedule": {"cron": "* * * * *", "rate": "rate(1 hour)"}})
    assert [e["loc"] for e in info.value.errors()] == [("schedule", "rate")]
    with pytest.raises(ValidationError) as info:
        Holder.model_validate({"schedule": {"rate": "rate(1 hour)", "timezone": "Mars/Olympus"}})
    assert [e["loc"] for e in info.value.errors()] == [("schedule", "timezone")]


# --- properties ------------------------------------------------------------------------

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Europe/Dublin",  # negative DST in tzdata
    "Australia/Lord_Howe",  # 30-minute DST
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/St_Johns",
    "America/Santiago",
    "Africa/Casablanca",  # two transitions around Ramadan
    "Pacific/Apia",  # skipped 2011-12-30
]


def _transitions(zone: str) -> list[datetime]:
    tz = ZoneInfo(zone)
    out: list[datetime] = []
    t = utc(2010, 1, 1)
    prev = t.astimezone(tz).utcoffset()
    while t < utc(2029, 1, 1):
        nxt = t + timedelta(days=1)
        off = nxt.astimezone(tz).utcoffset()
        if off != prev:
            lo, hi = t, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) // 2
                if mid.astimezone(tz).utcoffset() == prev:
                    lo = mid
                else:
                    hi = mid
            out.append(hi)
        prev, t = off, nxt
    return out


TRANSITIONS = {zone: _transitions(zone) for zone in ZONES}


@dataclass(frozen=True)
class Field:
    """One cron field, as text in both syntaxes plus the values it stands for."""

    text: str
    aws: str
    values: frozenset[int]


def _field(lo: int, hi: int, *, dow: bool = False) -> st.SearchStrategy[Field]:
    def shift(v: int) -> str:  # AWS day-of-week numbers run 1-7 from Sunday
        return str(v + 1) if dow else str(v)

    def make(text: str, aws: str, values: range | set[int]) -> Field:
        return Field(text, aws, frozenset(values))

    single = st.integers(lo, hi).map(lambda a: make(str(a), shift(a), {a}))
    pair = st.tuples(st.integers(lo, hi), st.integers(lo, hi)).map(sorted)
    span = pair.map(
        lambda p: make(f"{p[0]}-{p[1]}", f"{shift(p[0])}-{shift(p[1])}", range(p[0], p[1] + 1))
    )
    listed = st.lists(st.integers(lo, hi), min_size=2, max_size=4, unique=True).map(
        lambda vs: make(",".join(map(str, vs)), ",".join(map(shift, vs)), set(vs))
    )
    step = st.integers(2, max(2, (hi - lo) // 2)).map(
        lambda n: make(f"*/{n}", f"*/{n}", range(lo, hi + 1, n))
    )
    span_step = st.tuples(pair, st.integers(2, 5)).map(
        lambda ps: make(
            f"{ps[0][0]}-{ps[0][1]}/{ps[1]}",
            f"{shift(ps[0][0])}-{shift(ps[0][1])}/{ps[1]}",
            range(ps[0][0], ps[0][1] + 1, ps[1]),
        )
    )
    star = st.just(make("*", "*", range(lo, hi + 1)))
    return st.one_of(star, single, span, listed, step, span_step)


@dataclass(frozen=True)
class CronFields:
    minute: Field
    hour: Field
    dom: Field
    month: Field
    dow: Field

    @property
    def standard(self) -> str:
        return " ".join(f.text for f in (self.minute, self.hour, self.dom, self.month, self.dow))

    @property
    def aws(self) -> str | None:
        """The same schedule in the AWS form, when it can say it (one day field is '*')."""
        head = f"{self.minute.aws} {self.hour.aws}"
        if self.dow.text == "*":
            return f"cron({head} {self.dom.aws} {self.month.aws} ? *)"
        if self.dom.text == "*":
            return f"cron({head} ? {self.month.aws} {self.dow.aws} *)"
        return None

    def matches(self, wall: datetime) -> bool:
        dom_ok = wall.day in self.dom.values
        dow_ok = (wall.weekday() + 1) % 7 in self.dow.values
        if self.dom.text.startswith("*") or self.dow.text.startswith("*"):
            day_ok = dom_ok and dow_ok
        else:
            day_ok = dom_ok or dow_ok
        return (
            wall.minute in self.minute.values
            and wall.hour in self.hour.values
            and wall.month in self.month.values
            and day_ok
        )


def _mostly_star(field: st.SearchStrategy[Field], lo: int, hi: int) -> st.SearchStrategy[Field]:
    star = Field("*", "*", frozenset(range(lo, hi + 1)))
    return st.one_of(st.just(star), st.just(star), field)


cron_fields = st.builds(
    CronFields,
    minute=_field(0, 59),
    hour=_mostly_star(_field(0, 23), 0, 23),
    dom=_mostly_star(_field(1, 31), 1, 31),
    month=_mostly_star(_field(1, 12), 1, 12),
    dow=_mostly_star(_field(0, 6, dow=True), 0, 6),
)


@st.composite
def instants(draw: st.DrawFn, zone: str) -> datetime:
    """Anywhere in 2015-2030, or close to one of the zone's UTC-offset changes."""
    near = TRANSITIONS[zone]
    close = draw(st.booleans())
    if near and close:
        t = draw(st.sampled_from(near))
        return t + timedelta(seconds=draw(st.integers(-8 * 3600, 3 * 3600)))
    return draw(
        st.datetimes(
            min_value=datetime(2015, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
        )
    )


def _jump_at(t: datetime, tz: ZoneInfo) -> timedelta:
    """How far the clock jumped forward at instant t (zero if it did not)."""
    jump = t.astimezone(tz).utcoffset() - (t - timedelta(seconds=1)).astimezone(tz).utcoffset()  # type: ignore[operator]
    return max(jump, timedelta(0))


def _expected_cron(fields: CronFields, tz: ZoneInfo, lo: datetime, hi: datetime) -> list[datetime]:
    """Brute force over every UTC minute in (lo, hi], applying the DST rules directly."""
    out: list[datetime] = []
    u = lo.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while u <= hi:
        loc = u.astimezone(tz)
        wall = loc.replace(tzinfo=None)
        fire = loc.fold == 0 and fields.matches(wall)
        jump = _jump_at(u, tz)
        w = wall - jump
        while not fire and w < wall:
            fire = fields.matches(w)
            w += timedelta(minutes=1)
        if fire:
            out.append(u)
        u += timedelta(minutes=1)
    return out


def _walk(s: Schedule, lo: datetime, hi: datetime, anchor: datetime = T0) -> list[datetime]:
    out: list[datetime] = []
    t = s.next_fire_after(lo, anchor)
    while t is not None and t <= hi:
        out.append(t)
        t = s.next_fire_after(t, anchor)
    return out


def _schedule(**kwargs: Any) -> Schedule:
    try:
        return Schedule(**kwargs)
    except ValidationError:
        assume(False)
        raise


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=cron_fields, zone=st.sampled_from(ZONES), data=st.data())
def test_cron_equals_brute_force_in_any_zone(
    fields: CronFields, zone: str, data: st.DataObject
) -> None:
    tz = ZoneInfo(zone)
    s = _schedule(cron=fields.standard, timezone=zone)
    lo = data.draw(instants(zone))
    hi = lo + timedelta(hours=8)
    got = _walk(s, lo, hi)
    assert got == _expected_cron(fields, tz, lo, hi)
    if fields.aws is not None:
        assert _walk(Schedule(cron=fields.aws, timezone=zone), lo, hi) == got


@settings(max_examples=100, deadline=None)
@given(fields=cron_fields, zone=st.sampled_from(ZONES), data=st.data())
def test_cron_slots_match_the_fields_in_local_time(
    fields: CronFields, zone: str, data: st.DataObject
) -> None:
    tz = ZoneInfo(zone)
    s = _schedule(cron=fields.standard, timezone=zone)
    after = data.draw(instants(zone))
    got = slots(s, after, 25)
    assert got == sorted(set(got)) and all(t > after for t in got)
    for t in got:
        loc = t.astimezone(tz)
        assert loc.fold == 0, f"{t} is the second pass of a repeated hour"
        if not fields.matches(loc.replace(tzinfo=None)):
            assert _jump_at(t, tz) > timedelta(0), f"{t} ({loc}) does not match {fields.standard}"


def _aware(zone_names: st.SearchStrategy[str]) -> st.SearchStrategy[datetime]:
    return st.datetimes(
        min_value=datetime(2020, 1, 1),
        max_value=datetime(2030, 1, 1),
        timezones=zone_names.map(ZoneInfo),
    )


rate_texts = st.one_of(
    st.sampled_from(["rate(1 second)", "rate(1 minute)", "rate(1 hour)", "rate(1 day)"]),
    st.tuples(st.integers(2, 120), st.sampled_from(["seconds", "minutes", "hours", "days"])).map(
        lambda p: f"rate({p[0]} {p[1]})"
    ),
)


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    zone = draw(st.sampled_from(ZONES))
    kind = draw(st.sampled_from(["cron", "rate", "interval", "at"]))
    kwargs: dict[str, Any] = {"timezone": zone}
    if kind == "cron":
        fields = draw(cron_fields)
        kwargs["cron"] = fields.aws if fields.aws and draw(st.booleans()) else fields.standard
    elif kind == "rate":
        kwargs["rate"] = draw(rate_texts)
    elif kind == "interval":
        kwargs["interval_seconds"] = draw(st.integers(1, 3 * 86400))
    else:
        when = draw(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)))
        kwargs["at"] = when.replace(microsecond=0).isoformat()
    if draw(st.booleans()):
        kwargs["start_at"] = draw(_aware(st.sampled_from(ZONES)))
    if draw(st.booleans()):
        kwargs["end_at"] = draw(_aware(st.sampled_from(ZONES)))
        if "start_at" in kwargs and kwargs["end_at"] < kwargs["start_at"]:
            kwargs["start_at"], kwargs["end_at"] = kwargs["end_at"], kwargs["start_at"]
    return _schedule(**kwargs)


anchors = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=100, deadline=None)
@given(s=schedules(), anchor=anchors, after=_aware(st.sampled_from(ZONES)))
def test_sequence_strictly_increases_and_stays_in_the_window(
    s: Schedule, anchor: datetime, after: datetime
) -> None:
    got = slots(s, after, 30, anchor=anchor)
    assert all(a < b for a, b in zip([after, *got], got, strict=False))
    for t in got:
        assert t.tzinfo == UTC and t.microsecond == 0
        if s.start_at is not None:
            assert t >= s.start_at
        if s.end_at is not None:
            assert t <= s.end_at
    if len(got) < 30:
        last = got[-1] if got else after
        assert s.is_expired(last, anchor)


@settings(max_examples=100, deadline=None)
@given(
    s=schedules(),
    anchor=anchors,
    t1=_aware(st.sampled_from(ZONES)),
    gap=st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=6)),
)
def test_next_fire_after_is_the_least_slot_after(
    s: Schedule, anchor: datetime, t1: datetime, gap: timedelta
) -> None:
    t2 = t1.astimezone(UTC) + gap  # in UTC: wall-clock arithmetic could go backwards
    t: datetime | None = s.next_fire_after(t1, anchor)
    while t is not None and t <= t2:
        t = s.next_fire_after(t, anchor)
    assert t == s.next_fire_after(t2, anchor)


@settings(max_examples=100, deadline=None)
@given(
    rate=st.one_of(rate_texts, st.integers(1, 10**6)),
    anchor=anchors,
    after=anchors,
    start=st.none() | _aware(st.sampled_from(ZONES)),
)
def test_rate_slots_are_exactly_one_period_apart(
    rate: str | int, anchor: datetime, after: datetime, start: datetime | None
) -> None:
    s = (
        Schedule(rate=rate, start_at=start)
        if isinstance(rate, str)
        else Schedule(interval_seconds=rate, start_at=start)
    )
    period = timedelta(seconds=s.period_seconds or 0)
    got = slots(s, after, 10, anchor=anchor)
    assert len(got) == 10 and got[0] > after
    assert all(b - a == period for a, b in itertools.pairwise(got))
    if start is None:
        base = anchor.replace(microsecond=0)
        assert got[0] >= base + period  # k >= 1: the anchor itself is not a slot
    else:
        base = start.astimezone(UTC).replace(microsecond=0)  # UTC first: arithmetic drops fold
        base += timedelta(seconds=1) if start.microsecond else timedelta(0)
        assert got[0] >= base  # k >= 0: start_at itself is a slot
    assert (got[0] - base) % period == timedelta(0)
    # No slot was skipped: the one before got[0] is not after `after`, or is outside the phase.
    previous = got[0] - period
    assert previous <= after or previous < (base + period if start is None else base)
