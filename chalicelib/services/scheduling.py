"""Slot arithmetic on epoch seconds, over the domain's Schedule."""

from __future__ import annotations

from chalicelib.domain.schedules import Schedule
from chalicelib.domain.timefmt import from_epoch, to_epoch


def next_slot(schedule: Schedule, after: float, anchor: float) -> float | None:
    """The first slot strictly after `after`, or None when the schedule has no more."""
    nxt = schedule.next_fire_after(from_epoch(after), from_epoch(anchor))
    return None if nxt is None else to_epoch(nxt)
