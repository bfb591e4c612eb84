"""The RunLogStore port in memory: each execution's lines in the order they were appended."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.logs import LogEntry, LogLevel, LogPage
from chalicelib.ports import RunLogStore

RANK = {level: i for i, level in enumerate(LogLevel)}


class MemoryRunLogStore(RunLogStore):
    """A token is the number of the execution's lines read so far."""

    def __init__(self) -> None:
        self.lines: dict[str, list[LogEntry]] = {}
        self._seen: set[tuple[str, str, int, int]] = set()
        self._lock = threading.Lock()

    def append(self, entries: Sequence[LogEntry]) -> None:
        with self._lock:
            for e in entries:
                identity = (e.ex_id, e.slice_id, e.attempt, e.seq)
                if identity not in self._seen:
                    self._seen.add(identity)
                    self.lines.setdefault(e.ex_id, []).append(e)

    def read(
        self,
        ex_id: str,
        *,
        slice_id: str | None = None,
        level: LogLevel | None = None,
        token: str | None = None,
        limit: int = 100,
    ) -> LogPage:
        if token is not None and not token.isdigit():
            reason = "not a token this route gave"
            raise InvalidInput(f"token: {reason}", [{"field": "token", "reason": reason}])
        floor = RANK[level] if level is not None else 0
        with self._lock:
            lines = list(self.lines.get(ex_id, []))
        at, out = int(token or 0), list[LogEntry]()
        while at < len(lines) and len(out) < limit:
            e = lines[at]
            at += 1
            if (slice_id is None or e.slice_id == slice_id) and RANK[e.level] >= floor:
                out.append(e)
        return LogPage(out, str(at) if at else token)
