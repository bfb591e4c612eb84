"""Run logs: what an op printed or logged on a slice, with its attempt and time."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class LogEntry:
    """One line of a run's log. `seq` orders lines written at the same time on one slice
    attempt; `source` says where the line came from (`stdout`, `stderr`, `logging`,
    `traceback`, `agent:<name>`, `cadenza`, `http`); `slice_id` is `SLICING` for what the
    reader printed while slicing the run."""

    ex_id: str
    slice_id: str
    attempt: int
    ts: float
    seq: int
    level: LogLevel
    source: str
    message: str


@dataclass(frozen=True)
class LogPage:
    """A page of a run's log, oldest first; `next_token` continues it (also the token to
    follow a running execution with: read again from it later)."""

    entries: list[LogEntry]
    next_token: str | None
