"""The records of the in-memory Store and what every part of it shares: one lock, copies
in and out, the JSON round trip of DynamoDB's JSON attributes."""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from chalicelib.adapters.dynamodb.counters import totals_of
from chalicelib.adapters.dynamodb.run_items import _one_slice_error as one_slice_error
from chalicelib.config import Settings
from chalicelib.domain.cluster import ClusterTotals
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Run
from chalicelib.domain.slices import Slice
from chalicelib.domain.transitions import EX_MACHINE, TERMINAL_EX, JobState
from chalicelib.ports import Alert, Sort, SupervisorRecord

T = TypeVar("T")
TX_BATCH = 25
MAX_TX_ITEMS = 100
ERROR_CHARS = 4000
RESOLVED = "resolved: completed by an operator"
LIVE_EX = frozenset(EX_MACHINE.states - TERMINAL_EX)
RUN_FIELDS = {f.name: f for f in dataclasses.fields(Run)}
JOB_FIELDS = {f.name for f in dataclasses.fields(Job)}
RUN_CURSOR = frozenset({"job_id", "slot", "created"})
LIST_CURSOR = frozenset({"job_id", "list_key", "created"})
OWNER_CURSOR = frozenset({"job_id", "owner", "created"})
LIST_KEY = "job"


def as_json(value: Any) -> Any:
    """A value as a JSON attribute keeps it: what json round-trips."""
    return None if value is None else json.loads(json.dumps(value))


def run_field_default(name: str) -> Any:
    f = RUN_FIELDS[name]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def window_of(
    items: list[T], key: Callable[[T], Any], sort: Sort, start: int, size: int
) -> list[T]:
    if size < 1:
        return []
    ordered = sorted(items, key=key, reverse=not sort.ascending)
    return ordered[start : start + size]


def page_of(
    items: list[T], key: Callable[[T], Any], after: Any, limit: int, newest_first: bool
) -> tuple[list[T], T | None]:
    """Up to `limit` items after the position `after` (None: from the start) in key order,
    and the last of them if another item follows it (the next page's position)."""
    ordered = sorted(items, key=key, reverse=newest_first)
    if after is not None:
        ordered = [i for i in ordered if (key(i) < after if newest_first else key(i) > after)]
    page = ordered[:limit]
    return page, (page[-1] if len(ordered) > limit else None)


class Tables:
    """The tables (dicts of records) and the one lock every write holds."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        self.runs: dict[tuple[str, str], Run] = {}
        self.slices: dict[tuple[str, str], Slice] = {}
        self.supervisor: SupervisorRecord | None = None
        self.alerts: dict[str, Alert] = {}
        self.counters: dict[int, ClusterTotals] = {}
        self._run_errors: set[tuple[str, str]] = set()  # runs on the errors index

    @staticmethod
    def _job_in(job: Job) -> Job:
        stored = copy.deepcopy(job)
        stored.definition = as_json(job.definition)
        stored.extra = {}
        if job.state not in (JobState.SCHEDULED, JobState.SUSPENDED):
            stored.next_fire_at = None
        return stored

    def _put_run(self, run: Run) -> None:
        stored = copy.deepcopy(run)
        stored.config = as_json(run.config)
        stored.result = as_json(run.result)
        stored.errors = as_json(run.errors) or []
        stored.tally_pending = False
        if run.status in TERMINAL_EX and not run.notify_due:  # else on the sweep till told
            stored.check_at = None
        key = (run.job_id, run.slot)
        self.runs[key] = stored
        if one_slice_error(run):
            self._run_errors.add(key)
        else:
            self._run_errors.discard(key)

    def _put_slice(self, sl: Slice) -> None:
        stored = copy.deepcopy(sl)
        stored.request = as_json(sl.request) or {}
        stored.result = as_json(sl.result)
        self.slices[(sl.ex_id, sl.slice_id)] = stored

    def _read(self, fn: Callable[[], T]) -> T:
        with self._lock:
            return copy.deepcopy(fn())

    def _has_room(self, job: Job, limit: int) -> bool:
        return len(job.active_slots) < limit

    def _add_to_counters(self, shard: int, run: Run) -> None:
        self.counters[shard] = self.counters.get(shard, ClusterTotals()) + totals_of(run)

    @staticmethod
    def _schedule(job: Job, state: JobState, next_fire_at: float | None, now: float) -> None:
        """The schedule part of a job write, applied to the stored job."""
        job.state = state
        job.version += 1
        job.updated = now
        keeps = state in (JobState.SCHEDULED, JobState.SUSPENDED) and next_fire_at is not None
        job.next_fire_at = next_fire_at if keeps else None


def indexed(jobs: list[Job]) -> list[Job]:
    """Jobs as an index query gives them (indexes.JOB_LISTED): copies without their slot
    sets, which only get_job reads."""
    return [
        dataclasses.replace(
            copy.deepcopy(j), active_slots=set(), buffered_slot=None, waiting_slots=set()
        )
        for j in jobs
    ]
