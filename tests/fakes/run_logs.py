"""Run logs in memory (the RunLogStore port): one entry per (ex_id, slice_id, attempt, seq),
read in the order they arrived (so a token, the position to read on from, stays valid
while entries are appended)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.logs import LogEntry, LogLevel, LogPage
from chalicelib.ports import RunLogStore

_RANK = {level: i for i, level in enumerate(LogLevel)}


class MemoryRunLogs(RunLogStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, int, int], LogEntry] = {}

    def append(self, entries: Sequence[LogEntry]) -> None:
        with self._lock:
            for e in entries:
                self._entries.setdefault((e.ex_id, e.slice_id, e.attempt, e.seq), e)

    def read(
        self,
        ex_id: str,
        *,
        slice_id: str | None = None,
        level: LogLevel | None = None,
        token: str | None = None,
        limit: int = 100,
    ) -> LogPage:
        with self._lock:
            ordered = [e for e in self._entries.values() if e.ex_id == ex_id]
        if token is not None and not token.isdigit():
            reason = "not a token of this log"
            raise InvalidInput(f"token: {reason}", [{"field": "token", "reason": reason}])
        start = int(token or 0)
        taken: list[LogEntry] = []
        end = start
        for e in ordered[start:]:
            end += 1
            if (slice_id is None or e.slice_id == slice_id) and (
                level is None or _RANK[e.level] >= _RANK[level]
            ):
                taken.append(e)
                if len(taken) == limit:
                    break
        return LogPage(taken, str(end))
