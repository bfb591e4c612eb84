"""Job schedules: cron (standard or AWS form), rate, one-time at(), and plain intervals."""

from chalicelib.domain.schedules.model import Schedule, ScheduleKind

__all__ = ["Schedule", "ScheduleKind"]
