"""Whole-second UTC arithmetic and time zones for schedules.

Every slot is a whole UTC second (an epoch second). A local time repeated by fall-back is
its first occurrence; one skipped by spring-forward is the first instant after the gap.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)
# Zone files that exist on many systems but are not IANA zone names.
_NOT_ZONES = frozenset({"localtime", "posixrules"})


def ts_floor(dt: datetime) -> int:
    return (dt - EPOCH) // SECOND


def ts_ceil(dt: datetime) -> int:
    return -((EPOCH - dt) // SECOND)


def from_ts(ts: int) -> datetime | None:
    try:
        return EPOCH + timedelta(seconds=ts)
    except OverflowError:
        return None


def require_aware(name: str, dt: datetime) -> None:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {dt!r}")


def _offset(ts: int, tz: ZoneInfo) -> timedelta | None:
    dt = from_ts(ts)
    return None if dt is None else dt.astimezone(tz).utcoffset()


def localize(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall time as a UTC instant.

    A repeated wall time is its first occurrence; a skipped one (in a spring-forward gap)
    is the transition instant, i.e. the first valid instant after the gap.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = sorted((ts_floor(min(first, other)), ts_ceil(max(first, other))))
    before = _offset(lo, tz)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(mid, tz) == before:
            lo = mid
        else:
            hi = mid
    return EPOCH + timedelta(seconds=hi)


def to_utc(dt: datetime, tz: ZoneInfo) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        return localize(dt.replace(tzinfo=None), tz)
    return dt.astimezone(UTC)


# --- parsing --------------------------------------------------------------------------


def time_zone(name: str) -> ZoneInfo:
    if name in _NOT_ZONES or name.startswith(("posix/", "right/")):
        raise ValueError(f"unknown time zone {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None
