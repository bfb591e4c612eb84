"""Capturing a slice attempt's run log (`chalicelib.ops.runlog`): prints, log records and
tracebacks, each line timed; the cap per attempt; secrets redacted; periodic flushes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from chalicelib.domain.logs import LogEntry, LogLevel, LogPage
from chalicelib.ops.runlog import SliceLog, capturing, shown_paths
from chalicelib.ports import FakeClock, RunLogStore
from tests.fakes.runlogs import MemoryRunLogStore

T0 = 1_800_000_000.0


def lines(store: MemoryRunLogStore, ex_id: str = "ex") -> list[LogEntry]:
    return store.lines.get(ex_id, [])


def test_prints_and_log_records_of_the_thread_are_captured_with_time_and_attempt() -> None:
    store, clock = MemoryRunLogStore(), FakeClock(T0)
    with capturing(SliceLog(store, "ex", "000002", 3, clock.now)):
        print("hello", "world")
        sys.stderr.write("half a ")
        sys.stderr.write("line\nand a last one without its end")
        logging.getLogger("my.op").warning("careful: %d", 7)
        logging.getLogger("chalicelib.adapters.s3").warning("Cadenza's own: not the op's")
    got = [(e.source, e.level, e.message) for e in lines(store)]
    assert got == [
        ("stdout", LogLevel.INFO, "hello world"),
        ("stderr", LogLevel.WARNING, "half a line"),
        ("logging", LogLevel.WARNING, "my.op: careful: 7"),
        ("stderr", LogLevel.WARNING, "and a last one without its end"),
    ]
    assert {(e.ex_id, e.slice_id, e.attempt) for e in lines(store)} == {("ex", "000002", 3)}
    assert [e.seq for e in lines(store)] == [1, 2, 3, 4]
    assert all(e.ts == T0 for e in lines(store))


def test_outside_a_capture_nothing_is_kept() -> None:
    store, clock = MemoryRunLogStore(), FakeClock(T0)
    with capturing(SliceLog(store, "ex", "0", 1, clock.now)):
        pass
    print("after")
    logging.getLogger("my.op").error("after")
    assert lines(store) == []


def test_over_the_cap_lines_are_dropped_and_one_line_says_how_many() -> None:
    store, clock = MemoryRunLogStore(), FakeClock(T0)
    with capturing(SliceLog(store, "ex", "0", 1, clock.now, cap=100)) as slog:
        assert slog is not None
        for i in range(30):
            slog.add(LogLevel.INFO, "stdout", f"line {i:04d}")  # 9 bytes each
    kept = lines(store)
    assert [e.message for e in kept[:11]] == [f"line {i:04d}" for i in range(11)]
    assert kept[-1].source == "cadenza" and kept[-1].level == LogLevel.WARNING
    assert kept[-1].message == (
        "19 lines (171 bytes) dropped: a slice attempt keeps at most 100 bytes of log"
    )
    assert len(kept) == 12


def test_secrets_are_redacted_from_every_line() -> None:
    store, clock = MemoryRunLogStore(), FakeClock(T0)
    with capturing(SliceLog(store, "ex", "0", 1, clock.now)) as slog:
        assert slog is not None
        slog.redact_with(lambda text: str(text).replace("hunter2", "***"))
        print("connecting with hunter2")
        logging.getLogger("my.op").info("password=hunter2")
    assert all("hunter2" not in e.message for e in lines(store))
    assert lines(store)[0].message == "connecting with ***"


def test_a_long_slice_writes_its_lines_every_few_seconds() -> None:
    store, clock = MemoryRunLogStore(), FakeClock(T0)
    with capturing(SliceLog(store, "ex", "0", 1, clock.now)):
        print("first")
        assert lines(store) == []  # buffered
        clock.advance(6)
        print("second, six seconds later")
        assert [e.message for e in lines(store)] == ["first", "second, six seconds later"]
        print("third")
    assert [e.message for e in lines(store)][-1] == "third"


def test_a_traceback_is_one_entry_without_the_workers_paths() -> None:
    store, clock = MemoryRunLogStore(), FakeClock(T0)
    with capturing(SliceLog(store, "ex", "0", 1, clock.now)) as slog:
        assert slog is not None
        try:
            _ = 1 / 0
        except ZeroDivisionError as exc:
            slog.failure(exc)
    [entry] = lines(store)
    assert (entry.source, entry.level) == ("traceback", LogLevel.ERROR)
    assert entry.message.startswith("Traceback (most recent call last):")
    assert entry.message.endswith("ZeroDivisionError: division by zero")
    assert 'File "tests/unit/test_run_log_capture.py"' in entry.message
    assert shown_paths(sys.prefix + "/lib/x.py") == "<python>/lib/x.py"


class Broken(RunLogStore):
    def append(self, entries: Sequence[LogEntry]) -> None:
        raise OSError("the store is down")

    def read(
        self,
        ex_id: str,
        *,
        slice_id: str | None = None,
        level: LogLevel | None = None,
        token: str | None = None,
        limit: int = 100,
    ) -> LogPage:
        return LogPage([], token)


def test_a_store_that_fails_does_not_fail_the_slice() -> None:
    clock = FakeClock(T0)
    with capturing(SliceLog(Broken(), "ex", "0", 1, clock.now)):
        print("lost, and logged")
