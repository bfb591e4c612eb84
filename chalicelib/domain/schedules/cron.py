"""Cron schedules, standard or AWS form: compiled for cronsim and walked slot by slot."""

from __future__ import annotations

import bisect
import calendar
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from chalicelib.domain.schedules.clock import SECOND, from_ts, localize, ts_floor

_DOW_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_AWS_YEARS = range(1970, 2200)
# cronsim itself stops after 50 years without a match; filtered walks stop likewise.
_GIVE_UP_YEARS = 50


@dataclass(frozen=True)
class CronSpec:
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
            lo, hi = _aws_range(base, bool(step_s), _aws_dow_value, (0, 6), "day-of-week")
            terms.append(",".join(str(d) for d in range(lo, hi + 1, step)))
    return ",".join(terms)


def _aws_range(
    base: str, stepped: bool, value: Callable[[str], int], full: tuple[int, int], what: str
) -> tuple[int, int]:
    """The bounds of one term of an AWS cron field: `*`, `a-b`, or one value (which, with a
    step, runs to the field's end)."""
    if base == "*":
        return full
    if "-" in base:
        a, b = base.split("-", 1)
        lo, hi = value(a), value(b)
        if hi < lo:
            raise ValueError(f"{what} range {base!r} runs backwards")
        return lo, hi
    lo = value(base)
    return lo, full[1] if stepped else lo


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
        full = (_AWS_YEARS[0], _AWS_YEARS[-1])
        lo, hi = _aws_range(base, bool(step_s), _aws_year_value, full, "year")
        years.update(range(lo, hi + 1, step))
    return tuple(sorted(years))


def _compile_aws(fields: list[str]) -> CronSpec:
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
    return CronSpec(expr, _aws_years(year), nearest, aws=True)


@lru_cache(maxsize=512)
def compile_cron(text: str) -> CronSpec:
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
    return CronSpec(expr, None, None, aws=False)


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


def _cron_walls(spec: CronSpec, after: datetime) -> Iterator[datetime]:
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
                    cursor = datetime(spec.years[i], 1, 1) - SECOND
                    give_up = spec.years[i] + _GIVE_UP_YEARS
                    break
                n = spec.nearest_weekday
                if n is not None and wall.day != _nearest_weekday(wall.year, wall.month, n):
                    cursor = datetime.combine(wall.date() + timedelta(days=1), time()) - SECOND
                    break
                yield wall
            else:
                return
        except OverflowError:
            return


def next_cron(spec: CronSpec, tz: ZoneInfo, lo: int, hi: int | None) -> int | None:
    """The first cron slot (epoch second) in (lo, hi]."""
    start = from_ts(lo)
    if start is None:
        return None
    # Every wall time before lo's own maps to an instant <= lo, so the walk starts there;
    # walls right after it may still map to <= lo (lo in a repeated hour's second pass).
    wall = start.astimezone(tz).replace(tzinfo=None, fold=0)
    for w in _cron_walls(spec, wall):
        ts = ts_floor(localize(w, tz))
        if hi is not None and ts > hi:
            return None
        if ts > lo:
            return ts
    return None


def explain_cron(text: str) -> str:
    """A short human description of a valid cron expression (best effort)."""
    spec = compile_cron(text)
    if spec.years is None and spec.nearest_weekday is None:
        try:
            return str(CronSim(spec.expr, datetime(2000, 1, 1)).explain())
        except Exception:  # explain() is best effort; the expression itself is valid
            pass
    return text.strip() if spec.aws else f"cron {text.strip()}"
