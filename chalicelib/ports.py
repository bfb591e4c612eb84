"""Ports: what the services need from the outside world. Adapters implement them.

Every method that changes state is a single conditional write (or one transaction): it
returns False / None when its condition did not hold (a lost race), and never half-applies.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.agents import Agent, Task
from chalicelib.domain.assets import Asset
from chalicelib.domain.cluster import ClusterTotals
from chalicelib.domain.jobs import Job
from chalicelib.domain.logs import LogEntry, LogLevel, LogPage
from chalicelib.domain.notifications import Notification
from chalicelib.domain.runs import (
    START_LEAD_S,
    Delivery,
    Run,
    RunTransition,
    StartHint,
    usable_lead,
)
from chalicelib.domain.secrets import SecretRef
from chalicelib.domain.slices import Slice, SliceEnding
from chalicelib.domain.transitions import ExStatus, JobState, SupervisorState


class Clock(ABC):
    """Where services read the time; tests inject a fake one."""

    @abstractmethod
    def now(self) -> float:
        """Epoch seconds."""


class SystemClock(Clock):
    def now(self) -> float:
        return time.time()


class FakeClock(Clock):
    """A settable clock for tests."""

    def __init__(self, start: float) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class SupervisorRecord:
    state: SupervisorState = SupervisorState.RUNNING
    last_tick_at: float | None = None
    ticks: int = 0
    last_stats: dict[str, Any] | None = None
    last_creating_tick: dict[str, Any] | None = None
    reason: str | None = None
    halted_at: float | None = None
    restarted_at: float | None = None
    updated: float = 0.0
    failed_ticks: int = 0
    last_failure_at: float | None = None
    last_failure: str | None = None


@dataclass(frozen=True)
class TickFailure:
    """Ticks that failed because the store could not be reached, not yet on the record:
    how many, and when and why the newest failed."""

    count: int
    at: float
    reason: str


@dataclass(frozen=True)
class Sort:
    """The order of a Teraslice listing: `created` or `updated`, ascending or not."""

    field: str = "updated"
    ascending: bool = False


@dataclass(frozen=True)
class Page:
    """Which page of a history listing (jobs, a job's runs): up to `limit` items from the
    token `cursor` a previous page returned (None: the first page), newest first unless
    told otherwise."""

    limit: int = 100
    cursor: str | None = None
    newest_first: bool = True


FIRST_PAGE = Page()


MAX_WINDOW = 10_000  # from + size, like Elasticsearch's result window


class JobStore(ABC):
    """Jobs, by id, and the sparse due index the supervisor reads."""

    @abstractmethod
    def create_job(self, job: Job, run: Run | None = None) -> None:
        """Store a new job; raises Conflict if its id exists. With `run`, its first run too
        (as given: if it holds a slot, `job.active_slots` has it), in one transaction: both
        are written or neither."""

    @abstractmethod
    def get_job(self, job_id: str) -> Job | None:
        """The job, or None."""

    @abstractmethod
    def due_jobs(self, shard: int, horizon: float, limit: int = 500) -> list[Job]:
        """SCHEDULED jobs of one due shard with next_fire_at <= horizon (an index query).
        Jobs read from an index, here and in the listings, come without their slot sets
        (`active_slots`, `buffered_slot`, `waiting_slots` empty): get_job reads them."""

    @abstractmethod
    def set_job_state(
        self,
        job: Job,
        state: JobState,
        next_fire_at: float | None,
        anchor: float | None = None,
        extra: dict[str, float | None] | None = None,
        now: float | None = None,
    ) -> bool:
        """Move a job to `state` if its version is still `job.version` (and the transition
        table allows it); only a SCHEDULED job is on the due index, a SUSPENDED one keeps
        its next slot for its resumption. `extra` sets (or, with None, removes) fields such
        as suspended_at. False on a lost race."""

    @abstractmethod
    def release_slots(self, job_id: str, slots: Iterable[str]) -> None:
        """Take slots out of a job's active set (healing: their runs have ended)."""

    # ---- listings (OpenSpecimen's /scheduled-jobs, Lens stats by user) ---------------------
    # Each is one Query on an index, never a Scan, paged by an opaque token: pass the token a
    # page returned as `cursor` to get the next one (None: no more). A token that is not one
    # of the same listing is InvalidInput naming `next`. Deleted jobs are left out.

    @abstractmethod
    def list_jobs(
        self, page: Page = FIRST_PAGE, state: JobState | None = None
    ) -> tuple[list[Job], str | None]:
        """Every job by creation time (the list index), optionally only those in `state`
        (a filter on the index query); one `page` of them and the next page's token."""

    @abstractmethod
    def jobs_by_owner(
        self, owner: str, page: Page = FIRST_PAGE, state: JobState | None = None
    ) -> tuple[list[Job], str | None]:
        """One owner's jobs by creation time (the owner index), as `list_jobs`."""

    # ---- Teraslice's /v1/jobs: from / size / sort over sharded indexes ---------------------
    @abstractmethod
    def job_window(
        self,
        deleted: bool,
        active: bool | None,
        sort: Sort,
        start: int,
        size: int,
        owner: str | None = None,
    ) -> list[Job]:
        """Jobs `start` to `start + size` (start + size <= MAX_WINDOW) in `sort` order, ties
        by job_id: the deleted ones or the others; with `active`, only active jobs (True:
        active or no flag) or only inactive ones (False); with `owner`, only that owner's.
        Index queries, never a Scan."""

    @abstractmethod
    def update_job(
        self,
        job: Job,
        definition: dict[str, Any],
        schedule: tuple[JobState, float | None, float | None] | None,
        now: float,
    ) -> bool:
        """Replace the job's definition if it is still at job.version and not deleted; with
        `schedule` (state, next_fire_at, anchor) also its schedule state, on or off the due
        index. False on a lost race or a deleted job."""

    @abstractmethod
    def set_job_active(self, job: Job, active: bool, now: float) -> bool:
        """Set the job's `active` flag, conditioned as update_job."""

    @abstractmethod
    def delete_job(self, job: Job, now: float) -> bool:
        """Mark the job deleted (deleted_on, inactive, off the due index) if it is still at
        job.version, not deleted, and holds no active slot. False otherwise."""

    @abstractmethod
    def mark_runs_deleted(self, job_id: str) -> int:
        """Mark the terminal runs of a deleted job deleted (they move to the deleted
        listing); idempotent. Returns how many were marked now."""


@dataclass(frozen=True)
class SlotWrite:
    """A tick's records for one job (at most 24, in slot order) and the advance of its
    schedule past them: to `next_fire_at`, or, with `expire`, off the due index; and the
    missed slots behind the cursor still to record in the ledger (`unrecorded`, None:
    unchanged). A `ledger` write records some of those: its records are missed ones, its
    job's schedule is left as it is."""

    records: Sequence[Run]
    job: Job
    next_fire_at: float | None
    expire: bool
    unrecorded: Sequence[tuple[float, str]] | None = None
    ledger: bool = False


class RunStore(ABC):
    """Runs (executions): created once per slot, changed only by conditional writes."""

    @abstractmethod
    def create_slots(self, writes: Sequence[SlotWrite]) -> bool:
        """In one transaction, for each write: put each of its records (a tick's runs and
        ledger records) if its (job_id, slot) is new, and advance its job's next_fire_at
        (or take the job off the due index and expire it) if the job's version is still
        `job.version` and it is still SCHEDULED. At most 100 items (records plus one per
        job), one write per job. False, with nothing written, if any condition fails. A
        created run holds none of its job's active slots: it takes one at its second; a
        buffered catch-up run joins its job's waiting runs in the same transaction.
        A missed slot's record goes over nothing or over the same missed record (written
        twice, harmlessly, by racing ticks). A `ledger` write sets its job's `unrecorded`
        if the job's version is still `job.version`, in any state, and leaves the version."""

    def create_slots_refused(self, writes: Sequence[SlotWrite]) -> frozenset[int] | None:
        """`create_slots`, telling why not: None once all are written; else (nothing was
        written) the indexes of the writes whose conditions failed, so that the others can
        be tried again together, or none if no write is to blame (a conflict, or a store
        that cannot tell)."""
        return None if self.create_slots(writes) else frozenset()

    @abstractmethod
    def create_run(self, run: Run, limit: int | None = None) -> bool:
        """Put an on-demand run if its slot is new; with `limit`, only if it can take one of
        the job's active slots. False if it could not."""

    @abstractmethod
    def wait_for_slot(self, run: Run, check_at: float) -> bool:
        """A pending run that found its job at its limit at its second waits for a slot:
        a catch-up run (`run.catchup`, kept on the record) among the job's waiting runs, any
        other as the job's one buffered run, only if none is buffered yet. The sweep looks
        at it again at `check_at`. False if it could not wait (nothing written)."""

    @abstractmethod
    def acquire_buffered(self, run: Run, limit: int) -> bool:
        """Turn the job's buffered run, or one of its waiting catch-up runs (only when no
        run is buffered: an on-time slot goes first), into an active one, if a slot is
        free."""

    @abstractmethod
    def get_run(self, job_id: str, slot: str) -> Run | None:
        """A strongly consistent read of one run."""

    def get_runs(self, keys: Sequence[tuple[str, str]]) -> list[Run | None]:
        """Strongly consistent reads of several runs (job_id, slot), in the keys' order
        (None for a run that does not exist); a store may read them in one call."""
        return [self.get_run(job_id, slot) for job_id, slot in keys]

    @abstractmethod
    def get_run_by_ex(self, ex_id: str) -> Run | None:
        """The run with this ex_id (through the ex_id index), or None."""

    @abstractmethod
    def list_runs(self, job_id: str, limit: int = 100, newest_first: bool = True) -> list[Run]:
        """A job's runs in slot order."""

    @abstractmethod
    def latest_run_that_ran(self, job_id: str) -> Run | None:
        """The job's run with the greatest slot that is not a ledger record (a skipped or
        missed slot), however many ledger records are newer."""

    @abstractmethod
    def apply_run(self, run: Run, transition: RunTransition) -> Run | None:
        """Persist one transition of `run` (see the `Run` methods that make them), in one
        conditional write: only if the stored status is one of `transition.sources` (the
        guard's states that the execution table allows) and every condition of its guard
        holds on the stored record. A terminal transition of a run holding one of its
        job's active slots frees that slot in the same transaction; one that takes a slot
        (`transition.acquire`: the job's limit) takes it in the same transaction, only if
        the job holds fewer than that many. Returns the run as written, or None if a
        condition did not hold."""

    @abstractmethod
    def claim_runs_together(self, claims: Sequence[tuple[Run, RunTransition]]) -> list[Run] | None:
        """Persist claims of several runs (non-terminal transitions, as `apply_run` would,
        slots taken with them) in one transaction, all or none: a burst's runs claimed
        ahead of their second at once. The runs as written, or None if any condition did
        not hold, two runs are of one job, or they do not fit one transaction: the caller
        then claims them one by one."""

    @abstractmethod
    def run_window(
        self,
        statuses: Iterable[ExStatus],
        deleted: bool,
        sort: Sort,
        start: int,
        size: int,
        owner: str | None = None,
    ) -> list[Run]:
        """Runs `start` to `start + size` with one of `statuses`, deleted or not (with
        `owner`, only runs of that owner's jobs), in `sort` order, ties by ex_id (one index
        query per status and shard, never a Scan)."""

    @abstractmethod
    def error_window(
        self, sort: Sort, start: int, size: int, owner: str | None = None
    ) -> list[Slice | Run]:
        """Every execution's errors (with `owner`, only those of that owner's jobs), `start`
        to `start + size` in `sort` order: slices in error and one-slice runs that failed
        (their error is kept on the run). Sparse indexes, never a Scan."""

    @abstractmethod
    def stalled_runs(self, shard: int, now: float, limit: int = 100) -> list[Run]:
        """Runs of one sweep shard whose check_at <= now (an index query): non-terminal
        ones, and ended ones whose events are still to record (`Run.notify_due`)."""

    @abstractmethod
    def clear_notify_due(self, run: Run) -> bool:
        """Take the mark of events still to record off this execution (`Run.notify_due`),
        and an ended run off the sweep, in one conditional write: False if the stored
        record is another execution or carries no mark."""

    # ---- history (OpenSpecimen's runs, Lens stats) -----------------------------------------
    # Served by the runs' global index (job_id, created), never a Scan. The index is
    # eventually consistent: the runs created in the last seconds of a window are read from
    # the table too (strongly consistent), so a run just created is listed with its status.

    @abstractmethod
    def runs_created_between(
        self,
        job_id: str,
        lo: float | None,
        hi: float | None,
        statuses: Iterable[ExStatus] | None = None,
        page: Page = FIRST_PAGE,
    ) -> tuple[list[Run], str | None]:
        """A job's runs (ledger records included) created from `lo` to `hi`, both
        inclusive (None: unbounded on that side), newest first unless `page` tells otherwise, only
        those whose status is in `statuses` when given (a filter: it narrows what is
        returned, not what is read). Runs created at the same instant (a tick's ledger
        records) keep the index's order from page to page: a token holds the whole key of
        the run it follows, so none is repeated or lost at a page boundary. Returns up to
        `page.limit` runs and the token of the next page (None when no run follows). A token is
        valid only for the same job and a window that contains its position; else
        InvalidInput naming `next`."""

    @abstractmethod
    def count_runs_by_status(
        self, job_id: str, lo: float | None, hi: float | None
    ) -> dict[ExStatus, int]:
        """How many of a job's runs created from `lo` to `hi` (inclusive) have each status
        (statuses with none are left out). Reads every run of the window (projected to its
        status), page by page."""


class SliceStore(ABC):
    """Slices of an execution, claimed with a lease."""

    @abstractmethod
    def put_slices(self, slices: Sequence[Slice]) -> int:
        """Write slices that do not exist yet (existing ones are left as they are).
        Returns how many were new."""

    @abstractmethod
    def get_slice(self, ex_id: str, slice_id: str) -> Slice | None:
        """One slice, strongly consistent."""

    @abstractmethod
    def list_slices(self, ex_id: str) -> list[Slice]:
        """Every slice of an execution, in order."""

    @abstractmethod
    def claim_slice(
        self, ex_id: str, slice_id: str, token: str, now: float, lease_until: float
    ) -> Slice | None:
        """pending or started-with-expired-lease -> started, with a new lease and
        attempts + 1. Returns the claimed slice, or None if not claimable. (A retry's backoff
        is the delay of its message; `not_before` only tells the sweep when to re-send.)"""

    @abstractmethod
    def release_slice(
        self, sl: Slice, token: str, not_before: float, error: str, now: float
    ) -> bool:
        """started (held by `token`) -> pending, to be retried not before `not_before`."""

    @abstractmethod
    def finish_slice(self, sl: Slice, run: Run, ending: SliceEnding) -> bool:
        """In one transaction: started -> completed / error as `ending` says (held by its
        `token`, or with the lease `expected_lease` when the sweep gives up on it) and count
        it on the run (processed or failed + 1, remaining - 1, progress lease renewed;
        workers_lost + 1 when the sweep gave up). False if the slice was not so held or the
        run has ended."""

    @abstractmethod
    def wait_slice(
        self, sl: Slice, token: str, check_at: float, wait: dict[str, Any], now: float
    ) -> bool:
        """started (held by `token`) -> pending with `wait` recorded, to be checked not
        before `check_at`; attempts - 1, so that the check's claim is not an attempt. False
        if the slice was not so held."""


class SupervisorStore(ABC):
    """The supervisor's single record."""

    @abstractmethod
    def get_supervisor(self) -> SupervisorRecord | None: ...

    @abstractmethod
    def init_supervisor(self, record: SupervisorRecord) -> SupervisorRecord:
        """Create the record if missing; return the stored one either way."""

    @abstractmethod
    def record_tick(
        self,
        now: float,
        stats: dict[str, Any],
        failure: TickFailure | None = None,
        *,
        created: bool = False,
    ) -> None:
        """Note a tick's time and figures, and the failed ticks since the last noted one; a
        tick that `created` runs is also kept as the last creating tick (with its time),
        which later quiet ticks do not overwrite."""

    @abstractmethod
    def record_tick_failure(self, failure: TickFailure) -> None:
        """Note ticks that failed (the store was unreachable); raises StoreUnavailable if it
        still is."""

    @abstractmethod
    def set_supervisor_state(
        self, state: SupervisorState, reason: str | None, now: float
    ) -> SupervisorRecord:
        """Apply a supervisor transition (conditional on the table's sources)."""


class RepairStore(ABC):
    """The two repairs of a hanging run (seed 000), each one transaction."""

    @abstractmethod
    def resolve_complete(self, run: Run, open_slices: Sequence[Slice], now: float) -> bool:
        """The run (still non-terminal, same ex_id) and its open slices become completed,
        and its active slot is freed, together. False if the run changed meanwhile."""

    @abstractmethod
    def reset_run(self, run: Run, fresh: Run, slices: Sequence[Slice], limit: int | None) -> bool:
        """Replace the run record (if it still has run.ex_id) by `fresh`, a new pending
        execution of the same slot, deleting the old execution's slices, taking the job's
        active slot if the job has a limit and the old run did not hold it. The key is
        reused, so the slot can never be created twice. False if anything changed."""


@dataclass(frozen=True)
class Alert:
    """Something an operator must look at: a hanging run, a slice given up on."""

    alert_id: str
    created: float
    reason: str
    job_id: str | None = None
    ex_id: str | None = None
    slot: str | None = None
    detail: dict[str, Any] | None = None


class AlertStore(ABC):
    @abstractmethod
    def put_alert(self, alert: Alert) -> None:
        """Keep an alert (idempotent on its id)."""

    @abstractmethod
    def list_alerts(self, limit: int = 100) -> list[Alert]:
        """The newest alerts, newest first (one query)."""


class SecretSource(ABC):
    """Where workers read the secrets that ops' parameters and runs' args name
    (SSM Parameter Store, Secrets Manager)."""

    @abstractmethod
    def secret_value(self, ref: SecretRef) -> str:
        """The secret's current value (decrypted); SecretUnavailable if it is missing or
        cannot be read. The value is never logged."""


class Notifier(ABC):
    """Where alerts are published (SNS in AWS); failing to publish never fails the caller."""

    @abstractmethod
    def publish(self, alert: Alert) -> None: ...

    def deliver(self, alert: Alert) -> None:
        """Publish from the notifications' outbox: raises DeliveryFailed if the alert was
        not accepted, so that it is tried again (by default: `publish`)."""
        self.publish(alert)


class RunLogStore(ABC):
    """Where run logs are kept (CloudWatch Logs or S3 on AWS; locally the local stack's
    store). Entries of one slice attempt are appended in batches; appending the same entry
    twice (same ex_id, slice_id, attempt, seq) keeps one."""

    @abstractmethod
    def append(self, entries: Sequence[LogEntry]) -> None:
        """Keep these entries (any executions, any slices)."""

    @abstractmethod
    def read(
        self,
        ex_id: str,
        *,
        slice_id: str | None = None,
        level: LogLevel | None = None,
        token: str | None = None,
        limit: int = 100,
    ) -> LogPage:
        """The execution's entries, oldest first, from `token` on, filtered by slice and
        by minimum level."""


class LiveRunStore(ABC):
    @abstractmethod
    def live_runs(self, limit: int = 1000) -> list[Run]:
        """Every non-terminal run (the sparse sweep index, every shard): no scan."""


class StatsStore(ABC):
    """Cluster-lifetime counters. A run's terminal write marks it (a sparse index, no extra
    call); a fold later adds marked runs to sharded counter items, each run exactly once."""

    @abstractmethod
    def fold_tallies(self, now: float, limit: int = 240) -> int:
        """Add up to `limit` marked (ended, not yet counted) runs to the counters: per batch
        of one shard, one transaction unmarks the runs (only if still marked) and adds their
        figures to that shard's counter item. Safe to run concurrently and to repeat.
        Returns how many runs it added."""

    @abstractmethod
    def cluster_totals(self) -> ClusterTotals:
        """The counters (one BatchGet of every shard) plus the runs still marked (one query
        per shard), so a run that has ended is counted whether folded or not."""


class QuotaStore(ABC):
    """Per-owner quotas: for each owner and kind (`jobs`, `runs`), the set of what counts
    against its limit, in one record, each addition conditioned on the set's size, so that
    racing requests cannot pass the limit together."""

    @abstractmethod
    def take_quota(self, owner: str, kind: str, member: str, limit: int) -> bool:
        """Add `member` to the owner's set if it holds fewer than `limit` members (or has it
        already). False if the set is full."""

    @abstractmethod
    def quota_members(self, owner: str, kind: str) -> set[str]:
        """The owner's set (a consistent read)."""

    @abstractmethod
    def release_quota(self, owner: str, kind: str, members: Iterable[str]) -> None:
        """Remove these members from the owner's set (absent ones are ignored)."""


class Store(
    QuotaStore,
    JobStore,
    RunStore,
    SliceStore,
    SupervisorStore,
    RepairStore,
    LiveRunStore,
    AlertStore,
    StatsStore,
    ABC,
):
    """The whole state store."""

    @abstractmethod
    def ensure_tables(self) -> None:
        """Create every table (and index) that is missing, and wait until active."""


@dataclass(frozen=True)
class StartMessage:
    """'Start this run now': its key, how long the queue holds the message back, and for a
    one-slice run the hint that lets the start worker claim it without reading it."""

    job_id: str
    slot: str
    delay: int = 0
    hint: StartHint | None = None
    lead: float = START_LEAD_S  # how early before its second it may be claimed (a burst's)
    sent_at: float | None = None  # when the tick that created the run sent it
    # the lease token of a claim made ahead by an earlier delivery, which handed the run
    # over to this message to run at its second (`StartPath.hand_off`)
    claim_token: str | None = None

    @property
    def delivery(self) -> Delivery:
        return Delivery(self.lead, self.sent_at)

    def body(self) -> dict[str, Any]:
        """The message body: the run's key, its lead if not the usual one, when the tick
        sent it, and the hint's fields if it has one."""
        body: dict[str, Any] = {"job_id": self.job_id, "slot": self.slot}
        if self.lead != START_LEAD_S:
            body["lead"] = self.lead
        if self.sent_at is not None:
            body["sent_at"] = self.sent_at
        if self.hint is not None:
            body.update(self.hint.to_body())
        if self.claim_token is not None:
            body["claim_token"] = self.claim_token
        return body

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> StartMessage:
        """The message a body came from (its delay is spent: 0)."""
        lead, sent_at = _number(body.get("lead")), _number(body.get("sent_at"))
        token = body.get("claim_token")
        return cls(
            str(body["job_id"]),
            str(body["slot"]),
            hint=StartHint.from_body(body),
            lead=START_LEAD_S if lead is None else usable_lead(lead),
            sent_at=sent_at,
            claim_token=token if isinstance(token, str) and token else None,
        )


@dataclass(frozen=True)
class StartGroup:
    """A burst's start messages due on the same second, sent as one message: a start
    worker takes many runs at once, so a burst's runs are all claimed before their second
    (a worker holds a batch of messages while it waits for their second)."""

    messages: tuple[StartMessage, ...]
    delay: int = 0

    def body(self) -> dict[str, Any]:
        return {"starts": [m.body() for m in self.messages]}


def start_messages(body: Mapping[str, Any]) -> list[StartMessage]:
    """The start messages a body holds: one, or a burst's group (`StartGroup`)."""
    group = body.get("starts")
    if isinstance(group, list):
        return [StartMessage.from_body(b) for b in group if isinstance(b, Mapping)]
    return [StartMessage.from_body(body)]


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class SliceMessage:
    """'Run this slice now': the run's key, the execution and slice, and the delay."""

    job_id: str
    slot: str
    ex_id: str
    slice_id: str
    delay: int = 0

    def body(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "slot": self.slot,
            "ex_id": self.ex_id,
            "slice_id": self.slice_id,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SliceMessage:
        """The message a body came from (its delay is spent: 0)."""
        return cls(
            str(body["job_id"]), str(body["slot"]), str(body["ex_id"]), str(body["slice_id"])
        )


class Queue(ABC):
    """Nudges: 'look at this run / slice now'. Losing or doubling one is always safe."""

    @abstractmethod
    def send_starts(self, messages: Sequence[StartMessage | StartGroup]) -> None:
        """Send start messages (or groups of them), each delivered no sooner than its delay
        (at most 900 s); raises if some could not be sent (the sweep re-sends what a lost
        one left)."""

    @abstractmethod
    def send_slices(self, messages: Sequence[SliceMessage]) -> None:
        """Send slice messages, each delivered no sooner than its delay, as send_starts."""


class BlobStore(ABC):
    """Objects in the bucket (S3): asset bundles and result files."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write (or overwrite) an object."""

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """An object's bytes, or None if there is none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; removing a missing one is not an error."""

    @abstractmethod
    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix`, in key order."""


class AssetStore(ABC):
    """Asset records: one per bundle (keyed by its content hash), unique by name and
    version, listed by creation time from an index."""

    @abstractmethod
    def ensure_table(self) -> None:
        """Create the assets table (and its indexes) if missing."""

    @abstractmethod
    def put_asset(self, asset: Asset) -> bool:
        """Store a new asset and claim its name and version, in one transaction. False if
        the id exists already; Conflict (`version_taken`) if the name and version are
        claimed by another id, or by a deleted asset (its claim is a tombstone)."""

    @abstractmethod
    def get_asset(self, asset_id: str) -> Asset | None:
        """The asset, or None."""

    @abstractmethod
    def assets_named(self, name: str, version: str | None = None) -> list[Asset]:
        """The assets of a name (optionally one version), newest first (an index query)."""

    @abstractmethod
    def list_assets(self, limit: int, newest_first: bool = True) -> list[Asset]:
        """Up to `limit` assets by creation time (an index query)."""

    @abstractmethod
    def delete_asset(self, asset: Asset, when: float) -> bool:
        """Remove the asset and mark its name/version claim deleted at `when`, together;
        the claim stays, so the name and version are never reused. False if it was gone."""


class WaitTargets(ABC):
    """Step Functions executions and ECS tasks, as the `stepfunctions` and `ecs` ops start,
    check and stop them. Answers are the services' own response shapes (dicts)."""

    @abstractmethod
    def start_execution(self, state_machine_arn: str, name: str, input_json: str) -> dict[str, Any]:
        """StartExecution (idempotent for the same name and input while it runs)."""

    @abstractmethod
    def describe_execution(self, execution_arn: str) -> dict[str, Any]:
        """DescribeExecution: status, output, error, cause."""

    @abstractmethod
    def stop_execution(self, execution_arn: str, cause: str) -> None:
        """StopExecution (an execution that has ended is not an error)."""

    @abstractmethod
    def run_task(self, request: dict[str, Any]) -> dict[str, Any]:
        """RunTask with these parameters (`clientToken` included): tasks and failures."""

    @abstractmethod
    def describe_task(self, cluster: str, task_arn: str) -> dict[str, Any] | None:
        """DescribeTasks for one task: the task, or None if ECS does not know it."""

    @abstractmethod
    def stop_task(self, cluster: str, task_arn: str, reason: str) -> None:
        """StopTask."""


class ObjectStore(ABC):
    """Objects in buckets that jobs read and write (the `s3` reader and writer), any bucket
    the stage allows, unlike BlobStore's one bucket of Cadenza's own."""

    @abstractmethod
    def list_objects(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        """Every (key, size) under `prefix`, in key order."""

    @abstractmethod
    def get_object(self, bucket: str, key: str, byte_range: tuple[int, int] | None) -> bytes:
        """The object's bytes, or the inclusive range `(first, last)` of them."""

    @abstractmethod
    def put_object(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        """Write (or overwrite) an object."""


class AgentStore(ABC):
    """Remote agents and their tasks (slices of command runs). Every change is one
    conditional write: a task is leased to one agent at a time."""

    @abstractmethod
    def ensure_table(self) -> None:
        """Create the table (and its indexes) if missing."""

    @abstractmethod
    def put_agent(self, agent: Agent) -> bool:
        """Add an agent if neither its principal nor its (owner, name) is taken; False if
        one is."""

    @abstractmethod
    def update_agent(self, agent: Agent) -> bool:
        """Replace an existing agent's record (labels, version, heartbeat, running tasks);
        False if it was removed."""

    @abstractmethod
    def delete_agent(self, agent: Agent) -> bool:
        """Remove an agent and its name; False if it was not there."""

    @abstractmethod
    def agent_by_principal(self, principal: str) -> Agent | None:
        """The agent a principal acts as (a consistent read)."""

    @abstractmethod
    def agents(self, owner: str | None, name: str | None = None) -> list[Agent]:
        """The agents of `owner` (None: every owner's), by owner then name; only `name`'s if
        given (one index query)."""

    @abstractmethod
    def put_tasks(self, tasks: Sequence[Task]) -> int:
        """Write the tasks that do not exist yet; how many were new."""

    @abstractmethod
    def get_task(self, task_id: str) -> Task | None: ...

    @abstractmethod
    def open_tasks(self, owner: str, limit: int = 100) -> list[Task]:
        """The owner's tasks not ended (waiting or leased), oldest first (a sparse index)."""

    @abstractmethod
    def lease_task(self, seen: Task, leased: Task, now: float) -> bool:
        """Write `leased` if the task is still as `seen` (same attempt) and takeable at
        `now`: waiting, or leased with its reclaim time passed. False otherwise."""

    @abstractmethod
    def renew_task(self, renewed: Task) -> bool:
        """Write the new renewal and reclaim times if the task is still leased by the same
        token; False otherwise."""

    @abstractmethod
    def release_task(self, released: Task, token: str) -> bool:
        """Write `released` (waiting again, for another attempt) if the task is still
        leased by `token`; False otherwise."""

    @abstractmethod
    def end_task(self, ended: Task) -> bool:
        """Write the ending if the task is still leased by `ended.token`; False otherwise."""


class NotificationStore(ABC):
    """Notifications (docs/notifications.md): each written once, by its key, into an outbox
    that the supervisor's tick delivers from; settled ones are kept (delivered or failed)."""

    @abstractmethod
    def emit(self, notes: Sequence[Notification]) -> int:
        """Put each notification into the outbox unless its key was ever written (pending or
        settled): one conditional write each. Returns how many were new."""

    @abstractmethod
    def due_notifications(self, now: float, limit: int = 100) -> list[Notification]:
        """Pending notifications whose next attempt is due by `now` and that no delivery
        holds (the outbox only: its size is the work due, not every notification kept)."""

    @abstractmethod
    def claim_notification(self, note: Notification, now: float) -> Notification | None:
        """Take a delivery attempt (attempts + 1, held for CLAIM_S) if the stored record is
        still as read; None if another supervisor took it."""

    @abstractmethod
    def settle_notification(self, note: Notification, now: float, error: str | None) -> None:
        """After the claimed attempt: delivered (error None), or to try again at
        `note.next_at`, or, past MAX_ATTEMPTS, kept as failed; out of the outbox once
        settled."""

    @abstractmethod
    def list_notifications(self, status: str, limit: int = 100) -> list[Notification]:
        """Notifications in `status` (pending, delivered, failed), newest first."""


class DeliveryFailed(Exception):
    """A notification could not be delivered this time; the reason is shown on it (no
    secret, no credential)."""


class NotificationSender(ABC):
    """Delivers one notification to its destination (SNS, a webhook)."""

    @abstractmethod
    def send(self, note: Notification) -> None:
        """Deliver it once; DeliveryFailed if it was not accepted."""
