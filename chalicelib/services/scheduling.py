"""Slot arithmetic on epoch seconds, over the domain's Schedule."""

from __future__ import annotations

from chalicelib.domain.schedules import Schedule
from chalicelib.domain.timefmt import from_epoch, to_epoch

CATCHUP_SCAN_LIMIT = 100_000


def next_slot(schedule: Schedule, after: float, anchor: float) -> float | None:
    """The first slot strictly after `after`, or None when the schedule has no more."""
    nxt = schedule.next_fire_after(from_epoch(after), from_epoch(anchor))
    return None if nxt is None else to_epoch(nxt)


def latest_slot_not_after(
    schedule: Schedule, first: float, now: float, anchor: float
) -> tuple[float, int]:
    """From a due slot `first`, the latest slot <= now, and how many earlier ones it passes."""
    slot, skipped = first, 0
    for _ in range(CATCHUP_SCAN_LIMIT):
        nxt = next_slot(schedule, slot, anchor)
        if nxt is None or nxt > now:
            break
        slot, skipped = nxt, skipped + 1
    return slot, skipped
