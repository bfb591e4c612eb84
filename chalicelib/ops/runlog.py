"""Capturing a slice attempt's run log: what its ops print (stdout, stderr), what they log
(the `logging` module), and the traceback of its failure, each line with its time, written
through the `RunLogStore` in batches (every `FLUSH_SECONDS` while output comes, and at the
attempt's end). An asset op's child process sends its own lines back (`sandbox`).

At most `CAP_BYTES` of text are kept per slice attempt; past it, lines are dropped and one
last line says how many. Secrets' values are redacted from every line, as from errors.
Writing the log never fails the slice: a store that fails loses those lines, logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from chalicelib.domain.logs import LogEntry, LogLevel
from chalicelib.ports import RunLogStore

log = logging.getLogger(__name__)
CAP_BYTES = 256 * 1024
FLUSH_SECONDS = 5.0
FLUSH_LINES = 1000
# records of these loggers are Cadenza's or its AWS clients', not the op's: not captured
NOT_THE_OPS = ("chalicelib", "botocore", "boto3", "urllib3", "s3transfer")
# the code's own folder, and the interpreter's, shown relative in a traceback
_ROOT = str(Path(__file__).resolve().parents[2]) + os.sep
_PREFIXES = sorted({sys.prefix, sys.base_prefix, sys.exec_prefix}, key=len, reverse=True)

_current: ContextVar[SliceLog | None] = ContextVar("cadenza_slice_log", default=None)


def level_of(levelno: int) -> LogLevel:
    """The run log's level for a `logging` level number."""
    if levelno >= logging.ERROR:
        return LogLevel.ERROR
    if levelno >= logging.WARNING:
        return LogLevel.WARNING
    return LogLevel.INFO if levelno >= logging.INFO else LogLevel.DEBUG


def shown_paths(text: str) -> str:
    """A traceback without the worker's own paths (its code and interpreter folders)."""
    for prefix in _PREFIXES:
        text = text.replace(prefix + os.sep, "<python>" + os.sep)
    return text.replace(_ROOT, "")


class SliceLog:
    """The log of one slice attempt, buffered and written through `store` in batches."""

    def __init__(
        self,
        store: RunLogStore,
        ex_id: str,
        slice_id: str,
        attempt: int,
        clock: Callable[[], float] = time.time,
        cap: int = CAP_BYTES,
    ) -> None:
        self.store, self.ex_id, self.slice_id, self.attempt = store, ex_id, slice_id, attempt
        self.clock, self.cap = clock, cap
        self._lock = threading.Lock()
        self._buffer: list[LogEntry] = []
        self._since: float | None = None  # when the oldest buffered line came
        self._seq = 0
        self._kept = 0  # bytes of text kept
        self._dropped = [0, 0]  # lines, bytes
        self._partial: dict[str, str] = {}  # a stream's unfinished line
        self._redactors: list[Callable[[Any], Any]] = []

    def redact_with(self, redact: Callable[[Any], Any]) -> None:
        """Apply `redact` (a secrets' substitution's) to every line, when it is written."""
        with self._lock:
            self._redactors.append(redact)

    def add(self, level: LogLevel, source: str, message: str, ts: float | None = None) -> None:
        """One line (a traceback is one line of many text lines)."""
        size = len(message.encode(errors="replace"))
        with self._lock:
            if self._kept + size > self.cap:
                self._dropped[0] += 1
                self._dropped[1] += size
                return
            self._kept += size
            self._seq += 1
            when = self.clock() if ts is None else ts
            entry = LogEntry(
                self.ex_id, self.slice_id, self.attempt, when, self._seq, level, source, message
            )
            self._buffer.append(entry)
            self._since = self._since if self._since is not None else self.clock()
            due = len(self._buffer) >= FLUSH_LINES or self.clock() - self._since >= FLUSH_SECONDS
        if due:
            self.flush()

    def write(self, source: str, text: str) -> None:
        """Text written on a stream: its complete lines (a partial one waits for its end)."""
        level = LogLevel.WARNING if source == "stderr" else LogLevel.INFO
        with self._lock:
            pending = self._partial.pop(source, "") + text
            *lines, rest = pending.split("\n")
            if rest:
                self._partial[source] = rest
        for line in lines:
            self.add(level, source, line)

    def failure(self, exc: BaseException) -> None:
        """The traceback of the exception that failed the attempt."""
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.add(LogLevel.ERROR, "traceback", shown_paths(text).rstrip("\n"))

    def tick(self) -> None:
        """Write what is buffered if it has waited `FLUSH_SECONDS` (a long slice's output)."""
        with self._lock:
            due = self._since is not None and self.clock() - self._since >= FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._buffer, self._since = self._buffer, [], None
            redactors = list(self._redactors)
        if not batch:
            return
        for redact in redactors:
            batch = [replace(e, message=str(redact(e.message))) for e in batch]
        try:
            self.store.append(batch)
        except Exception:  # the run goes on without these lines
            log.exception("run log of %s/%s: %d lines lost", self.ex_id, self.slice_id, len(batch))

    def close(self) -> None:
        """The attempt ended: unfinished lines, a line for what the cap dropped, all written."""
        with self._lock:
            partial, self._partial = self._partial, {}
        for source, rest in partial.items():
            self.write(source, rest + "\n")
        lines, size = self._dropped
        if lines:
            with self._lock:
                self._kept, self.cap = 0, self.cap + 1024
            self.add(
                LogLevel.WARNING,
                "cadenza",
                f"{lines} lines ({size} bytes) dropped: a slice attempt keeps at most "
                f"{self.cap - 1024} bytes of log",
            )
        self.flush()


def current() -> SliceLog | None:
    """The log of the slice attempt this thread runs, if any."""
    return _current.get()


@contextlib.contextmanager
def capturing(slice_log: SliceLog | None) -> Iterator[SliceLog | None]:
    """Within, this thread's prints and log records go to `slice_log` (also where they
    went before); at the end, it is closed (written). None: nothing is captured."""
    if slice_log is None:
        yield None
        return
    install()
    token = _current.set(slice_log)
    try:
        yield slice_log
    finally:
        _current.reset(token)
        slice_log.close()


class _Stream:
    """Stands for sys.stdout / sys.stderr: a thread that captures also keeps its lines."""

    def __init__(self, inner: IO[str], source: str) -> None:
        self._inner, self._source = inner, source

    def write(self, text: str) -> int:
        target = _current.get()
        if target is not None:
            target.write(self._source, text)
        return self._inner.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        target = _current.get()
        if target is None or record.name.split(".")[0] in NOT_THE_OPS:
            return
        try:
            text = self.format(record)
        except Exception:
            text = str(record.msg)
        target.add(level_of(record.levelno), "logging", shown_paths(text))


_handler: list[logging.Handler] = []
_install_lock = threading.Lock()


def install() -> None:
    """Put the capturing streams in place (again, if something replaced them since: a test
    runner's capture) and the log handler, once per process."""
    with _install_lock:
        if not isinstance(sys.stdout, _Stream):
            sys.stdout = _Stream(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _Stream):
            sys.stderr = _Stream(sys.stderr, "stderr")
        if not _handler:
            handler = _Handler()
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            logging.getLogger().addHandler(handler)
            _handler.append(handler)
