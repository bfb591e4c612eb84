"""Job schedules: cron (standard or AWS form), rate, one-time at(), and plain intervals.

Every slot is a whole UTC second. Cron and at() are read in the schedule's time zone. A local
time repeated by fall-back fires once, at its first occurrence (as EventBridge Scheduler
does). A local time skipped by spring-forward fires once, at the first instant after the gap
(as Debian cron does; EventBridge Scheduler documents skipping it instead). Rates and
intervals are absolute durations, untouched by DST.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Self
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from chalicelib.domain.schedules.clock import (
    from_ts,
    require_aware,
    time_zone,
    to_utc,
    ts_ceil,
    ts_floor,
)
from chalicelib.domain.schedules.cron import compile_cron, explain_cron, next_cron
from chalicelib.domain.schedules.parsing import parse_at, parse_rate

__all__ = ["Schedule", "ScheduleKind"]

ScheduleKind = Literal["cron", "rate", "at", "interval"]

_KIND_FIELDS = ("cron", "rate", "at", "interval_seconds")


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
    interval_seconds: int | None = Field(default=None, strict=True)
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                compile_cron(v)
            except ValueError as exc:
                raise _custom("invalid_cron", f"invalid cron expression {v!r}: {exc}") from None
        return v

    @field_validator("rate")
    @classmethod
    def _valid_rate(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_rate(v)
            except ValueError as exc:
                raise _custom("invalid_rate", str(exc)) from None
        return v

    @field_validator("at")
    @classmethod
    def _valid_at(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_at(v)
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
            time_zone(v)
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
        tz = time_zone(zone)
        try:
            backwards = to_utc(v, tz) < to_utc(start, tz)
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
            return parse_rate(self.rate)
        return self.interval_seconds

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone."""
        return time_zone(self.timezone)

    def _window(self, tz: ZoneInfo) -> tuple[int | None, int | None]:
        start = None if self.start_at is None else ts_ceil(to_utc(self.start_at, tz))
        end = None if self.end_at is None else ts_floor(to_utc(self.end_at, tz))
        return start, end

    def _at_ts(self, tz: ZoneInfo) -> int:
        assert self.at is not None
        return ts_floor(to_utc(parse_at(self.at), tz))

    def next_fire_after(self, after: datetime, anchor: datetime) -> datetime | None:
        """The first slot strictly after `after`, as a UTC datetime; None if none is left.

        `anchor` is when a rate or interval schedule began counting (the job's creation
        time): its slots are anchor + k*period for k >= 1, or start_at + k*period for
        k >= 0 when `start_at` is set. Cron and at() ignore it. No slot falls before
        `start_at` or after `end_at`.
        """
        require_aware("after", after)
        if self.kind in ("rate", "interval") and self.start_at is None:
            require_aware("anchor", anchor)
        try:
            return self._next_slot(after, anchor)
        except OverflowError:  # past datetime's range: no representable slot
            return None

    def _next_slot(self, after: datetime, anchor: datetime) -> datetime | None:
        tz = self.zone
        start, end = self._window(tz)
        lo = ts_floor(after)
        if start is not None:
            lo = max(lo, start - 1)
        slot: int | None
        kind = self.kind
        if kind == "at":
            at_ts = self._at_ts(tz)
            slot = at_ts if at_ts > lo else None
        elif kind == "cron":
            assert self.cron is not None
            slot = next_cron(compile_cron(self.cron), tz, lo, end)
        else:
            period = self.period_seconds
            assert period is not None
            if start is not None:
                base, first = start, 0
            else:
                base, first = ts_floor(anchor), 1
            slot = base + period * max(first, (lo - base) // period + 1)
        if slot is None or (end is not None and slot > end):
            return None
        return from_ts(slot)

    def is_expired(self, now: datetime, anchor: datetime | None = None) -> bool:
        """True when no slot is left after `now` (end_at or the at() time has passed).

        A rate or interval schedule without `start_at` needs `anchor` to tell whether a
        slot still fits before `end_at`; without it only `end_at <= now` counts.
        """
        require_aware("now", now)
        if anchor is None:
            if self.kind in ("rate", "interval") and self.start_at is None:
                end = self._window(self.zone)[1]
                return end is not None and end <= ts_floor(now)
            anchor = now
        return self.next_fire_after(now, anchor) is None

    def describe(self) -> str:
        """A short human description, e.g. 'every 5 minutes' or 'At 02:30 every day (UTC)'."""
        text: str
        if self.cron is not None:
            text = f"{explain_cron(self.cron)} ({self.timezone})"
        elif self.rate is not None:
            value, unit = self.rate.strip()[5:-1].split()
            text = f"every {unit}" if value.lstrip("+") == "1" else f"every {int(value)} {unit}"
        elif self.at is not None:
            when = parse_at(self.at)
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
