"""The rate and at() forms of a schedule, parsed."""

from __future__ import annotations

import re
from datetime import datetime

_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_rate(text: str) -> int:
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


def parse_at(text: str) -> datetime:
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
