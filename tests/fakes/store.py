"""An in-memory Store that honours the port's contract as DynamoStore does.

Every write takes the one lock, checks its whole condition against the stored records,
then applies every change, so a write (or a "transaction") is all or nothing, and a lost
race returns False / None exactly where DynamoDB's conditional write fails. Records are
copied in and out: a caller's object is never the stored one. DynamoDB's indexes are
derived from the records (see the `_in_*` predicates), the way its sparse indexes list
only the items that carry their keys.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from typing_extensions import override

from chalicelib.adapters.dynamodb.paging import decode_cursor, encode_cursor
from chalicelib.adapters.dynamodb.store import _field_default as field_default
from chalicelib.adapters.dynamodb.store import _one_slice_error as one_slice_error
from chalicelib.adapters.dynamodb.store import _totals_of as totals_of
from chalicelib.config import Settings
from chalicelib.domain.cluster import ClusterTotals
from chalicelib.domain.errors import Conflict
from chalicelib.domain.jobs import Job, due_shard
from chalicelib.domain.runs import Run
from chalicelib.domain.slices import Slice
from chalicelib.domain.transitions import (
    EX_MACHINE,
    JOB_MACHINE,
    LEDGER_EX,
    SUPERVISOR_MACHINE,
    TERMINAL_EX,
    ExStatus,
    JobState,
    SliceState,
    SupervisorState,
)
from chalicelib.ports import Alert, RunUpdate, Sort, Store, SupervisorRecord, TickFailure

T = TypeVar("T")
TX_BATCH = 25
MAX_TX_ITEMS = 100
ERROR_CHARS = 4000
RESOLVED = "resolved: completed by an operator"
LIVE_EX = frozenset(EX_MACHINE.states - TERMINAL_EX)
_RUN_FIELDS = {f.name: f for f in dataclasses.fields(Run)}
_JOB_FIELDS = {f.name for f in dataclasses.fields(Job)}
_RUN_CURSOR = frozenset({"job_id", "slot", "created"})
_LIST_CURSOR = frozenset({"job_id", "list_key", "created"})
_OWNER_CURSOR = frozenset({"job_id", "owner", "created"})
LIST_KEY = "job"


def _json(value: Any) -> Any:
    """A value as a JSON attribute keeps it: what json round-trips."""
    return None if value is None else json.loads(json.dumps(value))


def _field_default(name: str) -> Any:
    return field_default(_RUN_FIELDS[name])


@dataclass(frozen=True)
class RunCondition:
    """The condition of one conditional run write (update_run's, in one place): the
    legal source statuses, and the optional guards on the stored run."""

    sources: frozenset[str]
    lease_token: str | None = None
    lease_expired_before: float | None = None
    check_at: float | None = None
    remaining_zero: bool = False
    cursor_below_total: bool = False
    unread_ex_id: str | None = None

    @classmethod
    def for_update(
        cls, update: RunUpdate, statuses: Iterable[ExStatus], **guards: Any
    ) -> RunCondition:
        """The sources are the caller's statuses that the transition table allows to reach
        the update's status (a terminal record is never rewritten)."""
        sources = {str(s) for s in statuses}
        new_status = update.set.get("status")
        if new_status is not None:
            allowed = set(EX_MACHINE.sources_for(str(new_status)))
            if ExStatus(new_status) not in TERMINAL_EX:
                allowed.add(str(new_status))
            sources &= allowed
        return cls(frozenset(sources), **guards)

    def holds(self, run: Run) -> bool:
        """Whether the stored `run` meets the condition."""
        checks = (
            str(run.status) in self.sources,
            self.lease_token is None or run.lease_token == self.lease_token,
            self.lease_expired_before is None
            or run.lease_expires_at is None
            or run.lease_expires_at < self.lease_expired_before,
            self.check_at is None or run.check_at == self.check_at,
            not self.remaining_zero or run.remaining == 0,
            not self.cursor_below_total or run.queued_cursor < run.slices_total,
            self.unread_ex_id is None
            or (run.ex_id == self.unread_ex_id and not run.buffered and not run.presliced),
        )
        return all(checks)


def _window(items: list[T], key: Callable[[T], Any], sort: Sort, start: int, size: int) -> list[T]:
    if size < 1:
        return []
    ordered = sorted(items, key=key, reverse=not sort.ascending)
    return ordered[start : start + size]


def _page(
    items: list[T], key: Callable[[T], Any], after: Any, limit: int, newest_first: bool
) -> tuple[list[T], T | None]:
    """Up to `limit` items after the position `after` (None: from the start) in key order,
    and the last of them if another item follows it (the next page's position)."""
    ordered = sorted(items, key=key, reverse=newest_first)
    if after is not None:
        ordered = [i for i in ordered if (key(i) < after if newest_first else key(i) > after)]
    page = ordered[:limit]
    return page, (page[-1] if len(ordered) > limit else None)


class MemoryStore(Store):
    """The Store port in memory: one lock, records copied in and out."""

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

    def ensure_tables(self) -> None:
        """Nothing to create."""

    # ---- records in and out -----------------------------------------------------------------
    @staticmethod
    def _job_in(job: Job) -> Job:
        stored = copy.deepcopy(job)
        stored.definition = _json(job.definition)
        stored.extra = {}
        if job.state not in (JobState.SCHEDULED, JobState.SUSPENDED):
            stored.next_fire_at = None
        return stored

    def _put_run(self, run: Run) -> None:
        stored = copy.deepcopy(run)
        stored.config = _json(run.config)
        stored.result = _json(run.result)
        stored.errors = _json(run.errors) or []
        stored.tally_pending = False
        if run.status in TERMINAL_EX:
            stored.check_at = None
        key = (run.job_id, run.slot)
        self.runs[key] = stored
        if one_slice_error(run):
            self._run_errors.add(key)
        else:
            self._run_errors.discard(key)

    def _put_slice(self, sl: Slice) -> None:
        stored = copy.deepcopy(sl)
        stored.request = _json(sl.request) or {}
        stored.result = _json(sl.result)
        self.slices[(sl.ex_id, sl.slice_id)] = stored

    def _read(self, fn: Callable[[], T]) -> T:
        with self._lock:
            return copy.deepcopy(fn())

    # ---- jobs -------------------------------------------------------------------------------
    def create_job(self, job: Job) -> None:
        with self._lock:
            if job.job_id in self.jobs:
                raise Conflict(f"job {job.job_id} exists", job_id=job.job_id)
            self.jobs[job.job_id] = self._job_in(job)

    def get_job(self, job_id: str) -> Job | None:
        return self._read(lambda: self.jobs.get(job_id))

    def _on_due_index(self, job: Job, shard: int) -> bool:
        return (
            job.state == JobState.SCHEDULED
            and job.next_fire_at is not None
            and not job.deleted
            and due_shard(job.job_id, self.settings.due_shards) == shard
        )

    def due_jobs(self, shard: int, horizon: float, limit: int = 500) -> list[Job]:
        def due() -> list[Job]:
            found = [
                j
                for j in self.jobs.values()
                if self._on_due_index(j, shard) and (j.next_fire_at or 0) <= horizon
            ]
            return sorted(found, key=lambda j: (j.next_fire_at, j.job_id))[:limit]

        return self._read(due)

    @staticmethod
    def _schedule(job: Job, state: JobState, next_fire_at: float | None, now: float) -> None:
        """The schedule part of a job write, applied to the stored job."""
        job.state = state
        job.version += 1
        job.updated = now
        keeps = state in (JobState.SCHEDULED, JobState.SUSPENDED) and next_fire_at is not None
        job.next_fire_at = next_fire_at if keeps else None

    def set_job_state(
        self,
        job: Job,
        state: JobState,
        next_fire_at: float | None,
        anchor: float | None = None,
        extra: dict[str, float | None] | None = None,
        now: float | None = None,
    ) -> bool:
        sources = JOB_MACHINE.sources_for(state) | ({state} if state == job.state else set())
        with self._lock:
            stored = self.jobs.get(job.job_id)
            if stored is None or stored.version != job.version or stored.state not in sources:
                return False
            self._schedule(stored, state, next_fire_at, time.time() if now is None else now)
            if anchor is not None:
                stored.anchor = anchor
            for k, v in (extra or {}).items():
                if k not in _JOB_FIELDS:
                    raise ValueError(f"not a job field: {k}")
                setattr(stored, k, v)
            return True

    def release_slots(self, job_id: str, slots: Iterable[str]) -> None:
        with self._lock:
            stored = self.jobs.get(job_id)
            if stored is not None:
                stored.active_slots -= set(slots)

    def _listed_jobs(self, owner: str | None, state: JobState | None) -> list[Job]:
        return [
            j
            for j in self.jobs.values()
            if not j.deleted
            and (state is None or j.state == state)
            and (owner is None or str(j.definition.get("owner", "anonymous")) == owner)
        ]

    def _job_page(
        self, jobs: list[Job], after: Any, limit: int, newest_first: bool
    ) -> tuple[list[Job], Job | None]:
        if limit < 1:
            return [], None
        return _page(jobs, lambda j: (j.created, j.job_id), after, limit, newest_first)

    @staticmethod
    def _after(key: dict[str, dict[str, str]] | None) -> tuple[float, str] | None:
        if key is None:
            return None
        return float(key["created"]["N"]), key["job_id"]["S"]

    def list_jobs(
        self,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = True,
        state: JobState | None = None,
    ) -> tuple[list[Job], str | None]:
        start = decode_cursor(cursor, names=_LIST_CURSOR, fixed={"list_key": LIST_KEY})
        with self._lock:
            page, last = self._job_page(
                self._listed_jobs(None, state), self._after(start), limit, newest_first
            )
            token = None if last is None else self._job_token(last, "list_key", LIST_KEY)
            return copy.deepcopy(page), token

    def jobs_by_owner(
        self,
        owner: str,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = True,
        state: JobState | None = None,
    ) -> tuple[list[Job], str | None]:
        start = decode_cursor(cursor, names=_OWNER_CURSOR, fixed={"owner": owner})
        with self._lock:
            page, last = self._job_page(
                self._listed_jobs(owner, state), self._after(start), limit, newest_first
            )
            token = None if last is None else self._job_token(last, "owner", owner)
            return copy.deepcopy(page), token

    @staticmethod
    def _job_token(job: Job, part: str, value: str) -> str | None:
        return encode_cursor(
            {"job_id": {"S": job.job_id}, part: {"S": value}, "created": {"N": str(job.created)}}
        )

    def job_window(
        self, deleted: bool, active: bool | None, sort: Sort, start: int, size: int
    ) -> list[Job]:
        def window() -> list[Job]:
            found = [
                j
                for j in self.jobs.values()
                if j.deleted == deleted and (active is None or j.active == active)
            ]
            return _window(found, lambda j: (getattr(j, sort.field), j.job_id), sort, start, size)

        return self._read(window)

    def _job_update(self, job: Job, idle: bool = False) -> Job | None:
        """The stored job if it is still at job.version, not deleted (and, with `idle`,
        holds no active slot): the condition of update_job, set_job_active, delete_job."""
        stored = self.jobs.get(job.job_id)
        if stored is None or stored.version != job.version or stored.deleted:
            return None
        if idle and stored.active_slots:
            return None
        return stored

    def update_job(
        self,
        job: Job,
        definition: dict[str, Any],
        schedule: tuple[JobState, float | None, float | None] | None,
        now: float,
    ) -> bool:
        with self._lock:
            stored = self._job_update(job)
            if stored is None:
                return False
            if schedule is None:
                stored.version, stored.updated = job.version + 1, now
            else:
                state, nxt, anchor = schedule
                self._schedule(stored, state, nxt, now)
                if anchor is not None:
                    stored.anchor = anchor
            stored.definition = _json(definition)
            return True

    def set_job_active(self, job: Job, active: bool, now: float) -> bool:
        with self._lock:
            stored = self._job_update(job)
            if stored is None:
                return False
            stored.active, stored.version, stored.updated = active, job.version + 1, now
            return True

    def delete_job(self, job: Job, now: float) -> bool:
        with self._lock:
            stored = self._job_update(job, idle=True)
            if stored is None:
                return False
            stored.deleted, stored.deleted_on, stored.active = True, now, False
            stored.updated, stored.version, stored.next_fire_at = now, job.version + 1, None
            return True

    def mark_runs_deleted(self, job_id: str) -> int:
        with self._lock:
            marked = 0
            for (jid, _), run in self.runs.items():
                if jid == job_id and not run.deleted and run.status in TERMINAL_EX:
                    run.deleted = True
                    marked += 1
            return marked

    # ---- runs -------------------------------------------------------------------------------
    def _has_room(self, job: Job, limit: int) -> bool:
        return len(job.active_slots) < limit

    def _scheduled_job(self, job: Job) -> Job | None:
        """The stored job, if it is still SCHEDULED at job.version (the tick's condition)."""
        stored = self.jobs.get(job.job_id)
        if stored is None or stored.version != job.version or stored.state != JobState.SCHEDULED:
            return None
        return stored

    def _advance(self, stored: Job, next_fire_at: float | None, expire: bool, now: float) -> None:
        state = JobState.EXPIRED if expire or next_fire_at is None else JobState.SCHEDULED
        self._schedule(stored, state, next_fire_at, now)

    def create_scheduled_run(
        self,
        run: Run,
        job: Job,
        next_fire_at: float | None,
        expire: bool,
        limit: int | None = None,
        buffer: bool = False,
    ) -> bool:
        if buffer:
            run.buffered, run.holds_slot = True, False
        elif limit is not None:
            run.holds_slot = True
        with self._lock:
            stored = self._scheduled_job(job)
            if stored is None or (run.job_id, run.slot) in self.runs:
                return False
            if buffer and stored.buffered_slot is not None:
                return False
            if not buffer and limit is not None and not self._has_room(stored, limit):
                return False
            self._put_run(run)
            self._advance(stored, next_fire_at, expire, run.created)
            if buffer:
                stored.buffered_slot = run.slot
            elif limit is not None:
                stored.active_slots.add(run.slot)
            return True

    def record_missed(
        self, records: Sequence[Run], job: Job, next_fire_at: float | None, expire: bool
    ) -> bool:
        if not 0 < len(records) < TX_BATCH:
            raise ValueError(f"between 1 and {TX_BATCH - 1} ledger records per write")
        with self._lock:
            stored = self._scheduled_job(job)
            if stored is None or any((r.job_id, r.slot) in self.runs for r in records):
                return False
            for record in records:
                self._put_run(record)
            self._advance(stored, next_fire_at, expire, records[0].created)
            return True

    def create_run(self, run: Run, limit: int | None = None) -> bool:
        if limit is not None:
            run.holds_slot = True
        with self._lock:
            if (run.job_id, run.slot) in self.runs:
                return False
            stored = self.jobs.get(run.job_id)
            if limit is not None:
                if stored is None or not self._has_room(stored, limit):
                    return False
                stored.active_slots.add(run.slot)
            self._put_run(run)
            return True

    def acquire_buffered(self, run: Run, limit: int) -> bool:
        with self._lock:
            job = self.jobs.get(run.job_id)
            stored = self.runs.get((run.job_id, run.slot))
            if job is None or job.buffered_slot != run.slot or not self._has_room(job, limit):
                return False
            if stored is None or stored.status != ExStatus.pending or not stored.buffered:
                return False
            job.active_slots.add(run.slot)
            job.buffered_slot = None
            stored.buffered, stored.holds_slot = False, True
            return True

    def get_run(self, job_id: str, slot: str) -> Run | None:
        return self._read(lambda: self.runs.get((job_id, slot)))

    def get_run_by_ex(self, ex_id: str) -> Run | None:
        return self._read(lambda: next((r for r in self.runs.values() if r.ex_id == ex_id), None))

    def _runs_of(self, job_id: str) -> list[Run]:
        return sorted((r for r in self.runs.values() if r.job_id == job_id), key=lambda r: r.slot)

    def list_runs(self, job_id: str, limit: int = 100, newest_first: bool = True) -> list[Run]:
        def runs() -> list[Run]:
            found = self._runs_of(job_id)
            return (found[::-1] if newest_first else found)[:limit]

        return self._read(runs)

    def latest_run_that_ran(self, job_id: str) -> Run | None:
        def latest() -> Run | None:
            ran = [r for r in self._runs_of(job_id) if r.status not in LEDGER_EX]
            return ran[-1] if ran else None

        return self._read(latest)

    @override  # the port's signature, until a transition verb replaces it
    def update_run(
        self,
        run: Run,
        update: RunUpdate,
        *,
        statuses: Iterable[ExStatus],
        lease_token: str | None = None,
        lease_expired_before: float | None = None,
        check_at: float | None = None,
        remaining_zero: bool = False,
        cursor_below_total: bool = False,
        unread: bool = False,
    ) -> Run | None:
        cond = RunCondition.for_update(
            update,
            statuses,
            lease_token=lease_token,
            lease_expired_before=lease_expired_before,
            check_at=check_at,
            remaining_zero=remaining_zero,
            cursor_below_total=cursor_below_total,
            unread_ex_id=run.ex_id if unread else None,
        )
        return self._write_run(run, update, cond)

    def _write_run(self, run: Run, update: RunUpdate, cond: RunCondition) -> Run | None:
        """Apply `update` to the stored run if `cond` holds; a terminal write of a run that
        holds a slot (the caller's view) also needs the stored run to hold it, and frees it."""
        if not cond.sources:
            return None
        new_status = update.set.get("status")
        terminal = new_status is not None and ExStatus(new_status) in TERMINAL_EX
        frees = terminal and run.holds_slot
        with self._lock:
            stored = self.runs.get((run.job_id, run.slot))
            if stored is None or not cond.holds(stored):
                return None
            job = self.jobs.get(run.job_id)
            if frees and (not stored.holds_slot or job is None):
                return None
            self._apply(stored, update, terminal)
            if update.set.get("has_errors") is True and one_slice_error(run, update.set):
                self._run_errors.add((run.job_id, run.slot))
            if frees and job is not None:
                stored.holds_slot = False
                job.active_slots.discard(run.slot)
            return copy.deepcopy(stored)

    @staticmethod
    def _apply(stored: Run, update: RunUpdate, terminal: bool) -> None:
        removes = list(update.remove)
        if terminal:
            removes += ["check_at", "lease_token", "lease_expires_at"]
        for name, value in update.set.items():
            if name not in _RUN_FIELDS:
                raise ValueError(f"not a run field: {name}")
            if name not in removes:
                setattr(stored, name, _field_default(name) if value is None else value)
        for name, amount in (update.add or {}).items():
            setattr(stored, name, (getattr(stored, name) or 0) + amount)
        for name in removes:
            setattr(stored, name, _field_default(name))
        stored.status = ExStatus(stored.status)
        stored.result, stored.errors = _json(stored.result), _json(stored.errors) or []
        if terminal:
            stored.tally_pending = True

    def stalled_runs(self, shard: int, now: float, limit: int = 100) -> list[Run]:
        def stalled() -> list[Run]:
            found = [
                r
                for r in self._on_sweep_index(shard)
                if r.check_at is not None and r.check_at <= now
            ]
            return found[:limit]

        return self._read(stalled)

    def _on_sweep_index(self, shard: int) -> list[Run]:
        found = [
            r
            for r in self.runs.values()
            if r.check_at is not None and due_shard(r.ex_id, self.settings.lease_shards) == shard
        ]
        return sorted(found, key=lambda r: (r.check_at, r.ex_id))

    def live_runs(self, limit: int = 1000) -> list[Run]:
        def live() -> list[Run]:
            out: list[Run] = []
            for shard in range(self.settings.lease_shards):
                out += self._on_sweep_index(shard)[:limit]
            return out[:limit]

        return self._read(live)

    def run_window(
        self, statuses: Iterable[ExStatus], deleted: bool, sort: Sort, start: int, size: int
    ) -> list[Run]:
        wanted = set(statuses)

        def window() -> list[Run]:
            found = [r for r in self.runs.values() if r.status in wanted and r.deleted == deleted]
            return _window(found, lambda r: (getattr(r, sort.field), r.ex_id), sort, start, size)

        return self._read(window)

    def error_window(self, sort: Sort, start: int, size: int) -> list[Slice | Run]:
        def key(item: Slice | Run) -> tuple[float, str, str]:
            return (getattr(item, sort.field), item.ex_id, getattr(item, "slice_id", ""))

        def window() -> list[Slice | Run]:
            found: list[Slice | Run] = [
                s for s in self.slices.values() if s.state == SliceState.error
            ]
            found += [self.runs[k] for k in self._run_errors if k in self.runs]
            return _window(found, key, sort, start, size)

        return self._read(window)

    # ---- history ------------------------------------------------------------------------------
    @staticmethod
    def _created_in(run: Run, lo: float | None, hi: float | None) -> bool:
        return (lo is None or run.created >= lo) and (hi is None or run.created <= hi)

    @override  # the port's signature
    def runs_created_between(
        self,
        job_id: str,
        lo: float | None,
        hi: float | None,
        statuses: Iterable[ExStatus] | None = None,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> tuple[list[Run], str | None]:
        wanted = None if statuses is None else {str(s) for s in statuses}
        start = decode_cursor(
            cursor, names=_RUN_CURSOR, fixed={"job_id": job_id}, number="created", lo=lo, hi=hi
        )
        if limit < 1 or wanted == set() or (lo is not None and hi is not None and lo > hi):
            return [], None
        after = None if start is None else (float(start["created"]["N"]), start["slot"]["S"])
        with self._lock:
            found = [
                r
                for r in self.runs.values()
                if r.job_id == job_id
                and self._created_in(r, lo, hi)
                and (wanted is None or str(r.status) in wanted)
            ]
            page, last = _page(found, lambda r: (r.created, r.slot), after, limit, newest_first)
            return copy.deepcopy(page), None if last is None else self._run_token(last)

    @staticmethod
    def _run_token(run: Run) -> str | None:
        return encode_cursor(
            {
                "job_id": {"S": run.job_id},
                "slot": {"S": run.slot},
                "created": {"N": str(run.created)},
            }
        )

    def count_runs_by_status(
        self, job_id: str, lo: float | None, hi: float | None
    ) -> dict[ExStatus, int]:
        with self._lock:
            counts: dict[ExStatus, int] = {}
            for r in self.runs.values():
                if r.job_id == job_id and self._created_in(r, lo, hi):
                    counts[r.status] = counts.get(r.status, 0) + 1
            return counts

    # ---- slices -------------------------------------------------------------------------------
    def put_slices(self, slices: Sequence[Slice]) -> int:
        with self._lock:
            new = 0
            for sl in slices:
                if (sl.ex_id, sl.slice_id) not in self.slices:
                    self._put_slice(sl)
                    new += 1
            return new

    def get_slice(self, ex_id: str, slice_id: str) -> Slice | None:
        return self._read(lambda: self.slices.get((ex_id, slice_id)))

    def list_slices(self, ex_id: str) -> list[Slice]:
        return self._read(
            lambda: sorted(
                (s for s in self.slices.values() if s.ex_id == ex_id), key=lambda s: s.slice_id
            )
        )

    def claim_slice(
        self, ex_id: str, slice_id: str, token: str, now: float, lease_until: float
    ) -> Slice | None:
        with self._lock:
            sl = self.slices.get((ex_id, slice_id))
            if sl is None:
                return None
            expired = (
                sl.state == SliceState.started
                and sl.lease_expires_at is not None
                and sl.lease_expires_at < now
            )
            if sl.state != SliceState.pending and not expired:
                return None
            sl.state, sl.lease_token, sl.lease_expires_at = SliceState.started, token, lease_until
            sl.attempts, sl.updated, sl.not_before = sl.attempts + 1, now, None
            return copy.deepcopy(sl)

    def release_slice(
        self, sl: Slice, token: str, not_before: float, error: str, now: float
    ) -> bool:
        with self._lock:
            stored = self.slices.get((sl.ex_id, sl.slice_id))
            if stored is None or stored.state != SliceState.started or stored.lease_token != token:
                return False
            stored.state, stored.not_before = SliceState.pending, not_before
            stored.error, stored.updated = error[:ERROR_CHARS], now
            stored.lease_token = stored.lease_expires_at = None
            return True

    @override  # the port's signature
    def finish_slice(
        self,
        sl: Slice,
        run: Run,
        *,
        token: str | None,
        expected_lease: float | None,
        completed: bool,
        result: Any,
        error: str | None,
        now: float,
    ) -> bool:
        with self._lock:
            stored = self.slices.get((sl.ex_id, sl.slice_id))
            held = stored is not None and (
                stored.lease_token == token
                if token is not None
                else stored.lease_expires_at == expected_lease
            )
            owner = self.runs.get((run.job_id, run.slot))
            if stored is None or stored.state != SliceState.started or not held:
                return False
            if owner is None or owner.status not in LIVE_EX:
                return False
            self._finish(stored, completed, result, error, now)
            self._count_slice(owner, run, completed, token is None, now)
            return True

    @staticmethod
    def _finish(sl: Slice, completed: bool, result: Any, error: str | None, now: float) -> None:
        sl.state = SliceState.completed if completed else SliceState.error
        sl.updated, sl.lease_token, sl.lease_expires_at = now, None, None
        if completed:
            sl.error = None
            if result is not None:
                sl.result = _json(result)
        else:
            sl.error = (error or "error")[:ERROR_CHARS]

    @staticmethod
    def _count_slice(owner: Run, run: Run, completed: bool, lost: bool, now: float) -> None:
        if completed:
            owner.processed += 1
        else:
            owner.failed += 1
            owner.has_errors = True
        owner.remaining -= 1
        owner.updated, owner.check_at = now, now + run.lease_seconds
        if lost:
            owner.workers_lost += 1

    # ---- supervisor ----------------------------------------------------------------------------
    def get_supervisor(self) -> SupervisorRecord | None:
        return self._read(lambda: self.supervisor)

    def init_supervisor(self, record: SupervisorRecord) -> SupervisorRecord:
        with self._lock:
            if self.supervisor is None:
                halted = record.state == SupervisorState.HALTED
                self.supervisor = SupervisorRecord(
                    state=record.state,
                    ticks=0,
                    reason=record.reason,
                    halted_at=record.updated if halted else None,
                    updated=record.updated,
                )
            return copy.deepcopy(self.supervisor)

    @staticmethod
    def _note_failure(record: SupervisorRecord, failure: TickFailure | None) -> None:
        if failure is not None:
            record.failed_ticks += failure.count
            record.last_failure_at, record.last_failure = failure.at, failure.reason

    def record_tick(
        self,
        now: float,
        stats: dict[str, Any],
        failure: TickFailure | None = None,
        *,
        created: bool = False,
    ) -> None:
        with self._lock:
            record = self.supervisor
            if record is None:
                return
            record.last_tick_at, record.ticks = now, record.ticks + 1
            record.last_stats, record.updated = _json(stats), now
            if created:
                record.last_creating_tick = _json({"tick_at": now, **stats})
            self._note_failure(record, failure)

    def record_tick_failure(self, failure: TickFailure) -> None:
        with self._lock:
            if self.supervisor is not None:
                self._note_failure(self.supervisor, failure)

    def set_supervisor_state(
        self, state: SupervisorState, reason: str | None, now: float
    ) -> SupervisorRecord:
        sources = SUPERVISOR_MACHINE.sources_for(state) | {state}
        with self._lock:
            record = self.supervisor
            if record is None or record.state not in sources:
                raise Conflict(
                    f"supervisor cannot go to {state}",
                    current_state=str(record.state) if record else None,
                )
            record.state, record.reason, record.updated = state, reason, now
            if state == SupervisorState.HALTED:
                record.halted_at = now
            else:
                record.restarted_at = now
            return copy.deepcopy(record)

    # ---- repairs -------------------------------------------------------------------------------
    def resolve_complete(self, run: Run, open_slices: Sequence[Slice], now: float) -> bool:
        if len(open_slices) > MAX_TX_ITEMS - 2:
            raise Conflict(
                f"{len(open_slices)} open slices: more than one transaction can hold",
                ex_id=run.ex_id,
            )
        open_states = (SliceState.pending, SliceState.started)
        with self._lock:
            stored = self.runs.get((run.job_id, run.slot))
            if stored is None or stored.ex_id != run.ex_id or stored.status not in LIVE_EX:
                return False
            slices = [self.slices.get((s.ex_id, s.slice_id)) for s in open_slices]
            if any(s is None or s.state not in open_states for s in slices):
                return False
            job = self.jobs.get(run.job_id)
            if run.holds_slot and job is None:
                return False
            self._resolved(stored, run, now)
            for sl in slices:
                assert sl is not None
                sl.state, sl.updated, sl.error = SliceState.completed, now, RESOLVED
                sl.lease_token = sl.lease_expires_at = None
            if run.holds_slot and job is not None:
                job.active_slots.discard(run.slot)
            return True

    @staticmethod
    def _resolved(stored: Run, run: Run, now: float) -> None:
        stored.status = ExStatus.completed
        stored.processed = run.slices_total - run.failed if run.slices_total else 1
        stored.remaining, stored.finished_at, stored.updated = 0, now, now
        stored.reason, stored.holds_slot, stored.tally_pending = RESOLVED, False, True
        stored.check_at = stored.lease_token = stored.lease_expires_at = None

    def reset_run(self, run: Run, fresh: Run, slices: Sequence[Slice], limit: int | None) -> bool:
        if len(slices) > MAX_TX_ITEMS - 2:
            raise Conflict(
                f"{len(slices)} slices: more than one transaction can delete", ex_id=run.ex_id
            )
        takes_slot = limit is not None and not run.holds_slot
        fresh.holds_slot = limit is not None
        with self._lock:
            stored = self.runs.get((run.job_id, run.slot))
            if stored is None or stored.ex_id != run.ex_id:
                return False
            if stored.tally_pending != run.tally_pending:
                return False
            job = self.jobs.get(run.job_id)
            if takes_slot and (job is None or limit is None or not self._has_room(job, limit)):
                return False
            self._put_run(fresh)
            if run.tally_pending:
                self._add_to_counters(due_shard(run.ex_id, self.settings.stats_shards), run)
            for sl in slices:
                self.slices.pop((sl.ex_id, sl.slice_id), None)
            if takes_slot and job is not None:
                job.active_slots.add(run.slot)
            return True

    # ---- counters and alerts -------------------------------------------------------------------
    def _add_to_counters(self, shard: int, run: Run) -> None:
        self.counters[shard] = self.counters.get(shard, ClusterTotals()) + totals_of(run)

    def _marked(self, shard: int) -> list[Run]:
        found = [
            r
            for r in self.runs.values()
            if r.tally_pending and due_shard(r.ex_id, self.settings.stats_shards) == shard
        ]
        return sorted(found, key=lambda r: r.ex_id)

    def fold_tallies(self, now: float, limit: int = 240) -> int:
        with self._lock:
            folded = 0
            for shard in range(self.settings.stats_shards):
                for run in self._marked(shard)[: max(0, limit - folded)]:
                    run.tally_pending = False
                    self._add_to_counters(shard, run)
                    folded += 1
            return folded

    def cluster_totals(self) -> ClusterTotals:
        with self._lock:
            total = sum(self.counters.values(), ClusterTotals())
            for run in self.runs.values():
                if run.tally_pending:
                    total += totals_of(run)
            return total

    def put_alert(self, alert: Alert) -> None:
        with self._lock:
            self.alerts[f"{alert.created:017.6f}#{alert.alert_id}"] = copy.deepcopy(alert)

    def list_alerts(self, limit: int = 100) -> list[Alert]:
        return self._read(
            lambda: [self.alerts[k] for k in sorted(self.alerts, reverse=True)][:limit]
        )
