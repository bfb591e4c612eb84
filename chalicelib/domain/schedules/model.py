"""Job schedules: cron (standard or AWS form), rate, one-time at(), and plain intervals.

Every slot is a whole UTC second. Cron and at() are read in the schedule's time zone. A local
time repeated by fall-back fires once, at its first occurrence (as EventBridge Scheduler
does). A local time skipped by spring-forward fires once, at the first instant after the gap
(as Debian cron does; EventBridge Scheduler documents skipping it instead). Rates and
intervals are absolute durations, untouched by DST.
"""

from __future__ import annotations

import bisect
import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = ["Schedule", "ScheduleKind"]

ScheduleKind = Literal["cron", "rate", "at", "interval"]

_KIND_FIELDS = ("cron", "rate", "at", "interval_seconds")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_DOW_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_AWS_YEARS = range(1970, 2200)
# Zone files that exist on many systems but are not IANA zone names.
_NOT_ZONES = frozenset({"localtime", "posixrules"})
# cronsim itself stops after 50 years without a match; filtered walks stop likewise.
_GIVE_UP_YEARS = 50


# --- whole-second UTC arithmetic ------------------------------------------------------


def _ts_floor(dt: datetime) -> int:
    return (dt - _EPOCH) // _SECOND


def _ts_ceil(dt: datetime) -> int:
    return -((_EPOCH - dt) // _SECOND)


def _from_ts(ts: int) -> datetime | None:
    try:
        return _EPOCH + timedelta(seconds=ts)
    except OverflowError:
        return None


def _require_aware(name: str, dt: datetime) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {dt!r}")


def _offset(ts: int, tz: ZoneInfo) -> timedelta | None:
    dt = _from_ts(ts)
    return None if dt is None else dt.astimezone(tz).utcoffset()


def _localize(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall time as a UTC instant.

    A repeated wall time is its first occurrence; a skipped one (in a spring-forward gap)
    is the transition instant, i.e. the first valid instant after the gap.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = sorted((_ts_floor(min(first, other)), _ts_ceil(max(first, other))))
    before = _offset(lo, tz)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(mid, tz) == before:
            lo = mid
        else:
            hi = mid
    return _EPOCH + timedelta(seconds=hi)


def _to_utc(dt: datetime, tz: ZoneInfo) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        return _localize(dt.replace(tzinfo=None), tz)
    return dt.astimezone(UTC)


# --- parsing --------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    if name in _NOT_ZONES or name.startswith(("posix/", "right/")):
        raise ValueError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _parse_rate(text: str) -> int:
    """`rate(value unit)` as a period in seconds."""
    m = re.fullmatch(r"\s*rate\((.*)\)\s*", text)
    if m is None:
        raise ValueError(f"rate {text!r} must look like rate(5 minutes)")
    parts = m.group(1).split()
    if len(parts) != 2:
        raise ValueError(f"rate {text!r} must be rate(value unit), e.g. rate(5 minutes)")
    value_s, unit = parts
    if not re.fullmatch(r"[+-]?\d+", value_s):
        raise ValueError(f"rate value {value_s!r} is not a whole number")
    value = int(value_s)
    if value <= 0:
        raise ValueError(f"rate value must be positive, got {value}")
    singular = unit[:-1] if unit.endswith("s") else unit
    if singular not in _RATE_UNITS:
        raise ValueError(f"unknown rate unit {unit!r}: use seconds, minutes, hours or days")
    if value == 1 and unit != singular:
        raise ValueError(f"a rate of 1 takes a singular unit: rate(1 {singular})")
    if value > 1 and unit == singular:
        raise ValueError(f"a rate of {value} takes a plural unit: rate({value} {singular}s)")
    return value * _RATE_UNITS[singular]


_AT_FORM = re.compile(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)")


def _parse_at(text: str) -> datetime:
    """A one-time slot: naive means local time in the schedule's zone, aware is absolute."""
    s = text.strip()
    if s.startswith("at("):
        m = _AT_FORM.fullmatch(s)
        if m is None:
            raise ValueError(f"at {text!r} must be at(yyyy-mm-ddThh:mm:ss)")
        try:
            return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            raise ValueError(f"at {text!r} is not a valid date and time") from None
    if not re.match(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", s):
        raise ValueError(f"at {text!r} must be at(yyyy-mm-ddThh:mm:ss) or an ISO 8601 date-time")
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"at {text!r} is not a valid ISO 8601 date-time") from None
    if dt.microsecond:
        raise ValueError(f"at {text!r} must be a whole second")
    return dt


@dataclass(frozen=True)
class _CronSpec:
    """A cron schedule as cronsim sees it, plus what cronsim cannot express."""

    expr: str  # 5-field cronsim expression over local wall time
    years: tuple[int, ...] | None  # sorted; None = every year
    nearest_weekday: int | None  # AWS `nW` day-of-month
    aws: bool


_SAME_ENDS_STEP = re.compile(r"(\w+)-\1/\d+")


def _cron_field(field: str) -> str:
    # cronsim reads "a-a/n" as "a/n" (a to the field's end); in cron it means just "a".
    return ",".join(
        m.group(1) if (m := _SAME_ENDS_STEP.fullmatch(term)) else term for term in field.split(",")
    )


def _cronsim(expr: str) -> CronSim:
    try:
        return CronSim(expr, datetime(2000, 1, 1))
    except (CronSimError, ValueError, IndexError) as exc:
        raise ValueError(str(exc).lower() or "cannot parse") from None


def _aws_dow_value(token: str) -> int:
    if token in _DOW_NAMES:
        return _DOW_NAMES.index(token)
    if token.isdigit() and 1 <= int(token) <= 7:
        return int(token) - 1
    raise ValueError(f"day-of-week {token!r} is not 1-7 or SUN-SAT")


def _aws_step(step: str, field: str) -> int:
    if not step.isdigit() or int(step) == 0:
        raise ValueError(f"{field} step {step!r} is not a positive whole number")
    return int(step)


def _aws_dow(field: str) -> str:
    """AWS day-of-week (1-7 = SUN-SAT, L, #) in cronsim's terms (0-6 = SUN-SAT)."""
    if field == "*":
        return "*"
    terms: list[str] = []
    for term in field.split(","):
        if term == "L":
            terms.append("6")  # alone, L is the last day of the week: Saturday
        elif term.endswith("L"):
            terms.append(f"{_aws_dow_value(term[:-1])}L")
        elif "#" in term:
            base, nth = term.split("#", 1)
            if not nth.isdigit() or not 1 <= int(nth) <= 5:
                raise ValueError(f"day-of-week {term!r}: the number after # must be 1-5")
            terms.append(f"{_aws_dow_value(base)}#{int(nth)}")
        else:
            # Expanded here: cronsim's range runs to 7 (Sunday again), so "2/2" would differ.
            base, _, step_s = term.partition("/")
            step = _aws_step(step_s, "day-of-week") if step_s else 1
            if base == "*":
                lo, hi = 0, 6
            elif "-" in base:
                a, b = base.split("-", 1)
                lo, hi = _aws_dow_value(a), _aws_dow_value(b)
                if hi < lo:
                    raise ValueError(f"day-of-week range {base!r} runs backwards")
            else:
                lo = _aws_dow_value(base)
                hi = 6 if step_s else lo
            terms.append(",".join(str(d) for d in range(lo, hi + 1, step)))
    return ",".join(terms)


def _aws_year_value(token: str) -> int:
    if not token.isdigit() or int(token) not in _AWS_YEARS:
        raise ValueError(f"year {token!r} is not 1970-2199")
    return int(token)


def _aws_years(field: str) -> tuple[int, ...] | None:
    if field == "*":
        return None
    years: set[int] = set()
    for term in field.split(","):
        base, _, step_s = term.partition("/")
        step = _aws_step(step_s, "year") if step_s else 1
        if base == "*":
            lo, hi = _AWS_YEARS[0], _AWS_YEARS[-1]
        elif "-" in base:
            a, b = base.split("-", 1)
            lo, hi = _aws_year_value(a), _aws_year_value(b)
            if hi < lo:
                raise ValueError(f"year range {base!r} runs backwards")
        else:
            lo = _aws_year_value(base)
            hi = _AWS_YEARS[-1] if step_s else lo
        years.update(range(lo, hi + 1, step))
    return tuple(sorted(years))


def _compile_aws(fields: list[str]) -> _CronSpec:
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ValueError("exactly one of day-of-month and day-of-week must be '?'")
    nearest: int | None = None
    if dom == "?":
        cs_dom = "*"
    elif m := re.fullmatch(r"(\d{1,2})W", dom):
        nearest = int(m.group(1))
        if not 1 <= nearest <= 31:
            raise ValueError(f"day-of-month {dom!r} is not 1W-31W")
        # Only these days can be the weekday nearest to day n; the walk filters the rest.
        cs_dom = ",".join(str(d) for d in range(max(1, nearest - 2), min(31, nearest + 2) + 1))
    elif "W" in dom and dom != "LW":
        raise ValueError(f"day-of-month {dom!r}: W must follow a single day (15W) or L (LW)")
    else:
        cs_dom = dom
    cs_dow = "*" if dow == "?" else _aws_dow(dow)
    expr = " ".join(_cron_field(f) for f in (minute, hour, cs_dom, month, cs_dow))
    sim = _cronsim(expr)
    if nearest is not None and nearest > max(_DAYS_IN_MONTH[mo] for mo in sim.months):
        raise ValueError(f"day-of-month {dom!r} never occurs in the chosen months")
    return _CronSpec(expr, _aws_years(year), nearest, aws=True)


@lru_cache(maxsize=512)
def _compile_cron(text: str) -> _CronSpec:
    """Parse a standard 5-field cron or the AWS form `cron(min hour dom month dow year)`."""
    s = text.strip()
    m = re.fullmatch(r"cron\((.*)\)", s, re.IGNORECASE | re.DOTALL)
    if m is not None:
        fields = m.group(1).upper().split()
        if len(fields) != 6:
            raise ValueError(
                "the AWS form needs 6 fields: cron(minutes hours day-of-month month "
                f"day-of-week year), got {len(fields)}"
            )
        return _compile_aws(fields)
    fields = s.split()
    if len(fields) != 5:
        raise ValueError(
            "needs 5 fields (minute hour day-of-month month day-of-week) "
            f"or the AWS form cron(... 6 fields ...), got {len(fields)}"
        )
    expr = " ".join(_cron_field(f) for f in fields)
    _cronsim(expr)
    return _CronSpec(expr, None, None, aws=False)


def _nearest_weekday(year: int, month: int, day: int) -> int | None:
    """The weekday (Mon-Fri) nearest to `day` without leaving the month (Quartz's `W`)."""
    last = calendar.monthrange(year, month)[1]
    if day > last:
        return None
    weekday = calendar.weekday(year, month, day)
    if weekday == 5:
        return day - 1 if day > 1 else day + 2
    if weekday == 6:
        return day + 1 if day < last else day - 2
    return day


def _cron_walls(spec: _CronSpec, after: datetime) -> Iterator[datetime]:
    """Naive local wall times matching `spec`, strictly after the naive `after`, in order."""
    cursor = after
    give_up = cursor.year + _GIVE_UP_YEARS
    while True:
        try:
            for wall in CronSim(spec.expr, cursor):
                if wall.year > give_up:
                    return
                if spec.years is not None and wall.year not in spec.years:
                    i = bisect.bisect_right(spec.years, wall.year)
                    if i == len(spec.years):
                        return
                    cursor = datetime(spec.years[i], 1, 1) - _SECOND
                    give_up = spec.years[i] + _GIVE_UP_YEARS
                    break
                n = spec.nearest_weekday
                if n is not None and wall.day != _nearest_weekday(wall.year, wall.month, n):
                    cursor = datetime.combine(wall.date() + timedelta(days=1), time()) - _SECOND
                    break
                yield wall
            else:
                return
        except OverflowError:
            return


def _next_cron(spec: _CronSpec, tz: ZoneInfo, lo: int, hi: int | None) -> int | None:
    """The first cron slot (epoch second) in (lo, hi]."""
    start = _from_ts(lo)
    if start is None:
        return None
    # Every wall time before lo's own maps to an instant <= lo, so the walk starts there;
    # walls right after it may still map to <= lo (lo in a repeated hour's second pass).
    wall = start.astimezone(tz).replace(tzinfo=None, fold=0)
    for w in _cron_walls(spec, wall):
        ts = _ts_floor(_localize(w, tz))
        if hi is not None and ts > hi:
            return None
        if ts > lo:
            return ts
    return None


# --- the model ------------------------------------------------------------------------


def _custom(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


class Schedule(BaseModel):
    """When a job runs: exactly one of cron, rate, at or interval_seconds, in a time zone.

    `start_at`/`end_at` bound the slots (inclusive); naive values are local to `timezone`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: str | None = None
    rate: str | None = None
    at: str | None = None
    interval_seconds: int | None = None
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                _compile_cron(v)
            except ValueError as exc:
                raise _custom("invalid_cron", f"invalid cron expression {v!r}: {exc}") from None
        return v

    @field_validator("rate")
    @classmethod
    def _valid_rate(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                _parse_rate(v)
            except ValueError as exc:
                raise _custom("invalid_rate", str(exc)) from None
        return v

    @field_validator("at")
    @classmethod
    def _valid_at(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                _parse_at(v)
            except ValueError as exc:
                raise _custom("invalid_at", str(exc)) from None
        return v

    @field_validator("interval_seconds")
    @classmethod
    def _valid_interval(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise _custom("invalid_interval", f"interval_seconds must be at least 1, got {v}")
        return v

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, v: str) -> str:
        try:
            _zone(v)
        except ValueError as exc:
            raise _custom("unknown_timezone", str(exc)) from None
        return v

    @field_validator("end_at")
    @classmethod
    def _end_not_before_start(cls, v: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("start_at")
        zone = info.data.get("timezone")
        if v is None or start is None or zone is None:
            return v
        tz = _zone(zone)
        try:
            backwards = _to_utc(v, tz) < _to_utc(start, tz)
        except OverflowError:  # at the very ends of datetime's range; nothing fires there
            return v
        if backwards:
            raise _custom(
                "invalid_window",
                f"end_at {v.isoformat()} is before start_at {start.isoformat()}",
            )
        return v

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Self:
        given = [name for name in _KIND_FIELDS if getattr(self, name) is not None]
        if len(given) == 1:
            return self
        names = ", ".join(_KIND_FIELDS)
        errors: list[InitErrorDetails]
        if not given:
            errors = [
                {
                    "type": _custom("missing_schedule", f"a schedule needs one of {names}"),
                    "loc": (),
                    "input": {},
                }
            ]
        else:
            errors = [
                {
                    "type": _custom(
                        "conflicting_schedule",
                        f"{name} cannot be combined with {given[0]}: set exactly one of {names}",
                    ),
                    "loc": (name,),
                    "input": getattr(self, name),
                }
                for name in given[1:]
            ]
        raise ValidationError.from_exception_data(type(self).__name__, errors)

    # --- derived ----------------------------------------------------------------------

    @property
    def kind(self) -> ScheduleKind:
        """Which of the four forms this schedule uses."""
        if self.cron is not None:
            return "cron"
        if self.rate is not None:
            return "rate"
        if self.at is not None:
            return "at"
        return "interval"

    @property
    def period_seconds(self) -> int | None:
        """The fixed period of a rate or interval schedule; None for cron and at."""
        if self.rate is not None:
            return _parse_rate(self.rate)
        return self.interval_seconds

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone."""
        return _zone(self.timezone)

    def _window(self, tz: ZoneInfo) -> tuple[int | None, int | None]:
        start = None if self.start_at is None else _ts_ceil(_to_utc(self.start_at, tz))
        end = None if self.end_at is None else _ts_floor(_to_utc(self.end_at, tz))
        return start, end

    def _at_ts(self, tz: ZoneInfo) -> int:
        assert self.at is not None
        return _ts_floor(_to_utc(_parse_at(self.at), tz))

    def next_fire_after(self, after: datetime, anchor: datetime) -> datetime | None:
        """The first slot strictly after `after`, as a UTC datetime; None if none is left.

        `anchor` is when a rate or interval schedule began counting (the job's creation
        time): its slots are anchor + k*period for k >= 1, or start_at + k*period for
        k >= 0 when `start_at` is set. Cron and at() ignore it. No slot falls before
        `start_at` or after `end_at`.
        """
        _require_aware("after", after)
        if self.kind in ("rate", "interval") and self.start_at is None:
            _require_aware("anchor", anchor)
        try:
            return self._next_slot(after, anchor)
        except OverflowError:  # past datetime's range: no representable slot
            return None

    def _next_slot(self, after: datetime, anchor: datetime) -> datetime | None:
        tz = self.zone
        start, end = self._window(tz)
        lo = _ts_floor(after)
        if start is not None:
            lo = max(lo, start - 1)
        slot: int | None
        kind = self.kind
        if kind == "at":
            at_ts = self._at_ts(tz)
            slot = at_ts if at_ts > lo else None
        elif kind == "cron":
            assert self.cron is not None
            slot = _next_cron(_compile_cron(self.cron), tz, lo, end)
        else:
            period = self.period_seconds
            assert period is not None
            if start is not None:
                base, first = start, 0
            else:
                base, first = _ts_floor(anchor), 1
            slot = base + period * max(first, (lo - base) // period + 1)
        if slot is None or (end is not None and slot > end):
            return None
        return _from_ts(slot)

    def is_expired(self, now: datetime, anchor: datetime | None = None) -> bool:
        """True when no slot is left after `now` (end_at or the at() time has passed).

        A rate or interval schedule without `start_at` needs `anchor` to tell whether a
        slot still fits before `end_at`; without it only `end_at <= now` counts.
        """
        _require_aware("now", now)
        if anchor is None:
            if self.kind in ("rate", "interval") and self.start_at is None:
                end = self._window(self.zone)[1]
                return end is not None and end <= _ts_floor(now)
            anchor = now
        return self.next_fire_after(now, anchor) is None

    def describe(self) -> str:
        """A short human description, e.g. 'every 5 minutes' or 'At 02:30 every day (UTC)'."""
        text: str
        if self.cron is not None:
            text = f"{self._explain_cron()} ({self.timezone})"
        elif self.rate is not None:
            value, unit = self.rate.strip()[5:-1].split()
            text = f"every {unit}" if value.lstrip("+") == "1" else f"every {int(value)} {unit}"
        elif self.at is not None:
            when = _parse_at(self.at)
            if when.tzinfo is None:
                text = f"once at {when.isoformat()} ({self.timezone})"
            else:
                text = f"once at {when.isoformat()}"
        else:
            n = self.interval_seconds
            text = "every second" if n == 1 else f"every {n} seconds"
        if self.start_at is not None:
            text += f", from {self.start_at.isoformat()}"
        if self.end_at is not None:
            text += f", until {self.end_at.isoformat()}"
        return text

    def _explain_cron(self) -> str:
        assert self.cron is not None
        spec = _compile_cron(self.cron)
        if spec.years is None and spec.nearest_weekday is None:
            try:
                return str(CronSim(spec.expr, datetime(2000, 1, 1)).explain())
            except Exception:  # explain() is best effort; the expression itself is valid
                pass
        return self.cron.strip() if spec.aws else f"cron {self.cron.strip()}"
