"""Run logs: each slice attempt's captured in the worker (`RunLogging`), and served,
owner-checked, page by page (`RunLogService`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalicelib.domain.logs import LogLevel, LogPage
from chalicelib.domain.runs import Run
from chalicelib.domain.slices import SLICING
from chalicelib.ops.registry import RedactedError
from chalicelib.ops.runlog import SliceLog, capturing
from chalicelib.ops.sandbox import AssetOpFailed
from chalicelib.ports import Clock, RunLogStore

MAX_PAGE = 1000


def note_failure(slice_log: SliceLog, exc: BaseException) -> None:
    """The attempt's failure in its log: its traceback; for an asset op, the child sent its
    own (this one would show only the worker's side), so its one line; for a failure with
    secrets, nothing more (`process` logged it, redacted)."""
    if isinstance(exc, RedactedError):
        return
    if isinstance(exc, AssetOpFailed):
        slice_log.add(LogLevel.ERROR, "cadenza", str(exc))
        return
    slice_log.failure(exc)


class RunLogging:
    """What the workers' paths share to capture a slice attempt's log."""

    clock: Clock
    run_logs: RunLogStore | None

    def logged(
        self,
        ex_id: str,
        slice_id: str,
        attempt: int,
        work: Callable[[], Any],
        note: bool = True,
    ) -> tuple[Any, Exception | None]:
        """`work()`'s result, or the exception it raised; what it printed and logged (and,
        with `note`, the traceback) written to the run log before this returns."""
        store = self.run_logs
        slice_log = (
            None if store is None else SliceLog(store, ex_id, slice_id, attempt, self.clock.now)
        )
        with capturing(slice_log):
            try:
                return work(), None
            except Exception as exc:
                if slice_log is not None and note:
                    note_failure(slice_log, exc)
                return None, exc

    def sliced(
        self,
        ex_id: str,
        attempt: int,
        work: Callable[[], list[dict[str, Any]]],
        note: bool = True,
    ) -> list[dict[str, Any]]:
        """`work()`, the run's slicing by its reader: what the reader prints and logs (an
        asset reader's child too), and with `note` its traceback, in the run's log under
        the slice id `SLICING`; its exception raised again."""
        requests: list[dict[str, Any]]
        requests, failure = self.logged(ex_id, SLICING, attempt, work, note)
        if failure is not None:
            raise failure
        return requests


class RunLogService:
    """Executions' run logs, read page by page (none kept: every page empty)."""

    def __init__(self, store: RunLogStore | None) -> None:
        self.store = store

    def read(
        self,
        run: Run,
        slice_id: str | None = None,
        level: LogLevel | None = None,
        token: str | None = None,
        size: int = 100,
    ) -> LogPage:
        """The run's lines, oldest first, from `token` on (`run`: as the caller may see it,
        `ExecutionService.by_ex`, which answers a non-owner NotFound)."""
        if self.store is None:
            return LogPage([], token)
        return self.store.read(run.ex_id, slice_id=slice_id, level=level, token=token, limit=size)
