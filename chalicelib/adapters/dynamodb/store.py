"""The DynamoDB store: the Store port over PynamoDB, with every change a conditional write."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pynamodb.exceptions import (
    GetError,
    PutError,
    PynamoDBException,
    QueryError,
    TransactWriteError,
    UpdateError,
)
from pynamodb.expressions.condition import size
from pynamodb.transactions import TransactWrite

from chalicelib.adapters.dynamodb.models import Models, build_models, build_stats_model
from chalicelib.adapters.dynamodb.paging import (
    decode_cursor,
    encode_cursor,
    merged_window,
    take_page,
)
from chalicelib.config import Settings
from chalicelib.domain.cluster import ClusterTotals, run_totals
from chalicelib.domain.errors import Conflict, StoreUnavailable
from chalicelib.domain.jobs import Job, due_shard
from chalicelib.domain.runs import Run, RunTransition, Trigger
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
from chalicelib.ports import Alert, Sort, Store, SupervisorRecord, TickFailure

T = TypeVar("T")
SUPERVISOR_KEY = "supervisor"
STATS_KEY = "stats#{}"
FOLD_BATCH = 24  # runs per fold transaction (with their shard's counter item)
CONDITIONAL = "ConditionalCheckFailedException"
TX_BATCH = 25
MAX_TX_ITEMS = 100  # DynamoDB's limit of items in one transaction
_RACE_CODES = {"TransactionConflict"}
LIST_CONCURRENCY = 16  # partitions of a listing read at once


def _cancel_codes(err: TransactWriteError) -> list[str]:
    return [r.code for r in (err.cancellation_reasons or []) if r is not None]


def _code(err: PynamoDBException) -> str | None:
    """The DynamoDB error code, if DynamoDB answered. (PynamoDB's cause_response_code fails
    on transport errors, such as a read timeout, that carry no response.)"""
    response = getattr(err.cause, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    return str(code) if code else None


def _is_conditional(err: PynamoDBException) -> bool:
    return _code(err) == CONDITIONAL


def _one_slice_error(run: Run, sets: dict[str, Any] | None = None) -> bool:
    """A run whose error is kept on the run itself (a one-slice run), not on a slice."""
    changed = sets or {}
    if not changed.get("has_errors", run.has_errors):
        return False
    return bool(changed.get("inline", run.inline)) or not changed.get(
        "slices_total", run.slices_total
    )


def _totals_of(m: Any) -> ClusterTotals:
    """An ended run's share of the counters, from its record (or its tally index entry)."""
    return run_totals(
        processed=int(m.processed or 0),
        failed=int(m.failed or 0),
        started_at=m.started_at,
        finished_at=m.finished_at,
        workers=int(m.workers or 0),
        workers_lost=int(m.workers_lost or 0),
    )


def _unavailable(err: PynamoDBException) -> StoreUnavailable:
    cause = _code(err) or type(err.cause or err).__name__
    return StoreUnavailable(f"DynamoDB: {cause}: {err}")


class DynamoStore(Store):
    """The Store port on DynamoDB through PynamoDB."""

    def __init__(self, settings: Settings, models: Models | None = None) -> None:
        self.settings = settings
        self.m = models or build_models(settings)
        self.stats = build_stats_model(settings)
        self._tx_client_lock = threading.Lock()
        self._tx_client_ready = False

    # ---- tables -------------------------------------------------------------------------
    def ensure_tables(self) -> None:
        for model in self.m.all:
            if not model.exists():
                model.create_table(wait=True, billing_mode="PAY_PER_REQUEST")

    # ---- helpers --------------------------------------------------------------------------
    def _transact(self, build: Callable[[TransactWrite], None], attempts: int = 4) -> bool:
        """Run a transaction; False on a failed condition, retried on transaction conflicts."""
        connection = self.m.connection
        if not self._tx_client_ready:
            # PynamoDB builds the botocore client on first use, once per thread that races
            # to it: a burst's first transactions (a fire pool, a poller batch) would each
            # build one (tens of milliseconds of CPU apiece).
            with self._tx_client_lock:
                connection.client  # noqa: B018 (built here, once)
                self._tx_client_ready = True
        for attempt in range(attempts):
            try:
                with TransactWrite(connection=connection) as tx:
                    build(tx)
                return True
            except TransactWriteError as err:
                codes = _cancel_codes(err)
                if "ConditionalCheckFailed" in codes:
                    return False
                if (set(codes) & _RACE_CODES or not codes) and attempt + 1 < attempts:
                    time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
                    continue
                if set(codes) & _RACE_CODES:
                    return False
                raise _unavailable(err) from err
        return False

    def _get(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (GetError, QueryError) as err:
            raise _unavailable(err) from err

    # ---- jobs -----------------------------------------------------------------------------
    def _job_model(self, job: Job) -> Any:
        d = job.definition
        scheduled = job.state == JobState.SCHEDULED and job.next_fire_at is not None
        keeps_slot = job.state in (JobState.SCHEDULED, JobState.SUSPENDED)
        return self.m.job(
            job.job_id,
            definition=d,
            name=str(d.get("name", "")),
            owner=str(d.get("owner", "anonymous")),
            state=str(job.state),
            active=job.active,
            deleted=job.deleted,
            deleted_on=job.deleted_on,
            next_fire_at=job.next_fire_at if keeps_slot else None,
            due_shard=due_shard(job.job_id, self.settings.due_shards) if scheduled else None,
            anchor=job.anchor,
            version=job.version,
            active_slots=set(job.active_slots) or None,
            buffered_slot=job.buffered_slot,
            suspended_at=job.suspended_at,
            resumed_at=job.resumed_at,
            list_part=self._list_part(job.job_id, job.deleted),
            created=job.created,
            updated=job.updated,
        )

    def _list_part(self, job_id: str, deleted: bool) -> str:
        shard = due_shard(job_id, self.settings.list_shards)
        return f"{'deleted' if deleted else 'live'}#{shard}"

    def _ex_part(self, ex_id: str, status: str, deleted: bool) -> str:
        shard = due_shard(ex_id, self.settings.list_shards)
        return f"{status}#{'deleted' if deleted else 'live'}#{shard}"

    def _err_shard(self, key: str) -> int:
        return due_shard(key, self.settings.list_shards)

    @staticmethod
    def _job(m: Any) -> Job:
        return Job(
            job_id=m.job_id,
            definition=dict(m.definition),
            state=JobState(m.state),
            active=bool(m.active),
            deleted=bool(m.deleted),
            deleted_on=m.deleted_on,
            next_fire_at=m.next_fire_at,
            anchor=m.anchor,
            version=int(m.version or 0),
            active_slots=set(m.active_slots or ()),
            buffered_slot=m.buffered_slot,
            suspended_at=m.suspended_at,
            resumed_at=m.resumed_at,
            created=float(m.created),
            updated=float(m.updated),
        )

    def create_job(self, job: Job) -> None:
        try:
            self._job_model(job).save(condition=self.m.job.job_id.does_not_exist())
        except PutError as err:
            if _is_conditional(err):
                raise Conflict(f"job {job.job_id} exists", job_id=job.job_id) from err
            raise _unavailable(err) from err

    def get_job(self, job_id: str) -> Job | None:
        def get() -> Job | None:
            try:
                return self._job(self.m.job.get(job_id, consistent_read=True))
            except self.m.job.DoesNotExist:
                return None

        return self._get(get)

    def due_jobs(self, shard: int, horizon: float, limit: int = 500) -> list[Job]:
        J = self.m.job
        return self._get(
            lambda: [
                self._job(m)
                for m in J.due_index.query(shard, J.next_fire_at <= horizon, limit=limit)
            ]
        )

    def _job_schedule_actions(
        self, job: Job, state: JobState, next_fire_at: float | None, now: float
    ) -> list[Any]:
        J = self.m.job
        actions = [J.state.set(str(state)), J.version.set(job.version + 1), J.updated.set(now)]
        if state in (JobState.SCHEDULED, JobState.SUSPENDED) and next_fire_at is not None:
            actions.append(J.next_fire_at.set(next_fire_at))
        else:
            actions.append(J.next_fire_at.remove())
        if state == JobState.SCHEDULED and next_fire_at is not None:
            actions.append(J.due_shard.set(due_shard(job.job_id, self.settings.due_shards)))
        else:  # off the due index: a suspended job keeps its next slot for its resumption
            actions.append(J.due_shard.remove())
        return actions

    def set_job_state(
        self,
        job: Job,
        state: JobState,
        next_fire_at: float | None,
        anchor: float | None = None,
        extra: dict[str, float | None] | None = None,
        now: float | None = None,
    ) -> bool:
        J = self.m.job
        sources = JOB_MACHINE.sources_for(state) | ({state} if state == job.state else set())
        actions = self._job_schedule_actions(job, state, next_fire_at, now or time.time())
        if anchor is not None:
            actions.append(J.anchor.set(anchor))
        for k, v in (extra or {}).items():
            attr = getattr(J, k)
            actions.append(attr.remove() if v is None else attr.set(v))
        try:
            J(job.job_id).update(
                actions=actions,
                condition=(J.version == job.version) & J.state.is_in(*map(str, sources)),
            )
            return True
        except UpdateError as err:
            if _is_conditional(err):
                return False
            raise _unavailable(err) from err

    # ---- runs -----------------------------------------------------------------------------
    def _run_model(self, run: Run) -> Any:
        active = run.status not in TERMINAL_EX
        return self.m.run(
            run.job_id,
            run.slot,
            ex_id=run.ex_id,
            status=str(run.status),
            trigger=str(run.trigger),
            args=run.args,
            config=run.config,
            scheduled_start=run.scheduled_start,
            created=run.created,
            updated=run.updated,
            started_at=run.started_at,
            finished_at=run.finished_at,
            workers=run.workers,
            slices_total=run.slices_total,
            processed=run.processed,
            failed=run.failed,
            remaining=run.remaining,
            queued_cursor=run.queued_cursor,
            inline=run.inline,
            attempts=run.attempts,
            lease_token=run.lease_token,
            lease_expires_at=run.lease_expires_at,
            check_at=run.check_at if active else None,
            sweep_shard=self._sweep_shard(run.ex_id) if active and run.check_at else None,
            result=run.result,
            has_errors=run.has_errors,
            errors=run.errors or None,
            reason=run.reason,
            holds_slot=run.holds_slot,
            buffered=run.buffered,
            start_after=run.start_after,
            presliced=run.presliced,
            recovered_from=run.recovered_from,
            deleted=run.deleted,
            ex_part=self._ex_part(run.ex_id, str(run.status), run.deleted),
            err_shard=self._err_shard(run.ex_id) if _one_slice_error(run) else None,
            workers_lost=run.workers_lost,
        )

    def _sweep_shard(self, ex_id: str) -> int:
        return due_shard(ex_id, self.settings.lease_shards)

    def _tally_shard(self, ex_id: str) -> int:
        return due_shard(ex_id, self.settings.stats_shards)

    @staticmethod
    def _run(m: Any) -> Run:
        return Run(
            job_id=m.job_id,
            slot=m.slot,
            ex_id=m.ex_id,
            scheduled_start=float(m.scheduled_start),
            config=dict(m.config),
            trigger=Trigger(m.trigger),
            status=ExStatus(m.status),
            args=m.args,
            created=float(m.created),
            updated=float(m.updated),
            started_at=m.started_at,
            finished_at=m.finished_at,
            workers=int(m.workers or 1),
            slices_total=int(m.slices_total or 0),
            processed=int(m.processed or 0),
            failed=int(m.failed or 0),
            remaining=int(m.remaining or 0),
            queued_cursor=int(m.queued_cursor or 0),
            inline=bool(m.inline),
            attempts=int(m.attempts or 0),
            lease_token=m.lease_token,
            lease_expires_at=m.lease_expires_at,
            check_at=m.check_at,
            result=m.result,
            has_errors=bool(m.has_errors),
            errors=list(m.errors or []),
            reason=m.reason,
            holds_slot=bool(m.holds_slot),
            buffered=bool(m.buffered),
            start_after=m.start_after,
            presliced=bool(m.presliced),
            recovered_from=m.recovered_from,
            deleted=bool(m.deleted),
            workers_lost=int(m.workers_lost or 0),
            tally_pending=m.tally_shard is not None,
        )

    def _has_room(self, limit: int) -> Any:
        J = self.m.job
        taken = size(J.active_slots)  # type: ignore[no-untyped-call]
        return J.active_slots.does_not_exist() | (taken < limit)

    def create_scheduled_run(
        self,
        run: Run,
        job: Job,
        next_fire_at: float | None,
        expire: bool,
        limit: int | None = None,
        buffer: bool = False,
    ) -> bool:
        R, J = self.m.run, self.m.job
        state = JobState.EXPIRED if expire or next_fire_at is None else JobState.SCHEDULED
        actions = self._job_schedule_actions(job, state, next_fire_at, run.created)
        cond = (J.version == job.version) & (J.state == str(JobState.SCHEDULED))
        if buffer:
            run.buffered, run.holds_slot = True, False
            actions.append(J.buffered_slot.set(run.slot))
            cond &= J.buffered_slot.does_not_exist()
        elif limit is not None:
            run.holds_slot = True
            actions.append(J.active_slots.add({run.slot}))
            cond &= self._has_room(limit)

        def build(tx: TransactWrite) -> None:
            tx.save(self._run_model(run), condition=R.slot.does_not_exist())
            tx.update(J(job.job_id), actions=actions, condition=cond)

        return self._transact(build)

    def record_missed(
        self, records: Sequence[Run], job: Job, next_fire_at: float | None, expire: bool
    ) -> bool:
        R, J = self.m.run, self.m.job
        if not 0 < len(records) < TX_BATCH:
            raise ValueError(f"between 1 and {TX_BATCH - 1} ledger records per write")
        state = JobState.EXPIRED if expire or next_fire_at is None else JobState.SCHEDULED
        now = records[0].created
        actions = self._job_schedule_actions(job, state, next_fire_at, now)

        def build(tx: TransactWrite) -> None:
            for record in records:
                tx.save(self._run_model(record), condition=R.slot.does_not_exist())
            tx.update(
                J(job.job_id),
                actions=actions,
                condition=(J.version == job.version) & (J.state == str(JobState.SCHEDULED)),
            )

        return self._transact(build)

    def create_run(self, run: Run, limit: int | None = None) -> bool:
        R, J = self.m.run, self.m.job
        if limit is None:
            try:
                self._run_model(run).save(condition=R.slot.does_not_exist())
                return True
            except PutError as err:
                if _is_conditional(err):
                    return False
                raise _unavailable(err) from err
        run.holds_slot = True

        def build(tx: TransactWrite) -> None:
            tx.save(self._run_model(run), condition=R.slot.does_not_exist())
            tx.update(
                J(run.job_id),
                actions=[J.active_slots.add({run.slot})],
                condition=J.job_id.exists() & self._has_room(limit),
            )

        return self._transact(build)

    def acquire_buffered(self, run: Run, limit: int) -> bool:
        R, J = self.m.run, self.m.job

        def build(tx: TransactWrite) -> None:
            tx.update(
                J(run.job_id),
                actions=[J.active_slots.add({run.slot}), J.buffered_slot.remove()],
                condition=(J.buffered_slot == run.slot) & self._has_room(limit),
            )
            tx.update(
                R(run.job_id, run.slot),
                actions=[R.buffered.set(False), R.holds_slot.set(True)],
                condition=(R.status == str(ExStatus.pending)) & (R.buffered == True),  # noqa: E712
            )

        return self._transact(build)

    def release_slots(self, job_id: str, slots: Iterable[str]) -> None:
        J = self.m.job
        stale = set(slots)
        if not stale:
            return
        try:
            J(job_id).update(actions=[J.active_slots.delete(stale)], condition=J.job_id.exists())
        except UpdateError as err:
            if not _is_conditional(err):
                raise _unavailable(err) from err

    def get_run(self, job_id: str, slot: str) -> Run | None:
        def get() -> Run | None:
            try:
                return self._run(self.m.run.get(job_id, slot, consistent_read=True))
            except self.m.run.DoesNotExist:
                return None

        return self._get(get)

    def get_run_by_ex(self, ex_id: str) -> Run | None:
        R = self.m.run
        found = self._get(lambda: [self._run(m) for m in R.ex_index.query(ex_id, limit=1)])
        if not found:
            return None
        return self.get_run(found[0].job_id, found[0].slot) or found[0]

    def list_runs(self, job_id: str, limit: int = 100, newest_first: bool = True) -> list[Run]:
        R = self.m.run
        return self._get(
            lambda: [
                self._run(m)
                for m in R.query(
                    job_id, scan_index_forward=not newest_first, limit=limit, consistent_read=True
                )
            ]
        )

    def latest_run_that_ran(self, job_id: str) -> Run | None:
        R = self.m.run
        ran = [str(s) for s in EX_MACHINE.states - LEDGER_EX]
        # the filter runs server-side, a page of 50 slots at a time, until one run passes
        found = self._get(
            lambda: list(
                R.query(
                    job_id,
                    scan_index_forward=False,
                    filter_condition=R.status.is_in(*ran),
                    limit=1,
                    page_size=50,
                    consistent_read=True,
                )
            )
        )
        return self._run(found[0]) if found else None

    def apply_run(self, run: Run, transition: RunTransition) -> Run | None:
        R = self.m.run
        cond = self._run_guard(run, transition)
        if cond is None:
            return None
        sets, removes = self._run_sets(run, transition)
        actions: list[Any] = []
        for k, v in sets.items():
            attr = getattr(R, k)
            actions.append(attr.remove() if v is None else attr.set(v))
        for k, n in transition.adds.items():
            actions.append(getattr(R, k).add(n))
        actions += [getattr(R, k).remove() for k in removes]
        if transition.terminal and run.holds_slot:
            if not self._finish_holding(run, actions, cond):
                return None
            return transition.applied_to(run)  # a transaction returns no item
        item = R(run.job_id, run.slot)
        try:
            item.update(actions=actions, condition=cond)
        except UpdateError as err:
            if _is_conditional(err):
                return None
            raise _unavailable(err) from err
        return self._run(item)

    def _run_guard(self, run: Run, transition: RunTransition) -> Any:
        """The write's condition: a source status the table allows, and the guard's
        conditions. None when no source is allowed (nothing to try)."""
        R, g = self.m.run, transition.guard
        sources = sorted(str(s) for s in transition.sources)
        if not sources:
            return None
        cond = R.status.is_in(*sources)
        if g.lease_token is not None:
            cond &= R.lease_token == g.lease_token
        if g.lease_expired_before is not None:
            expired = R.lease_expires_at < g.lease_expired_before
            cond &= R.lease_expires_at.does_not_exist() | expired
        if g.check_at is not None:
            cond &= R.check_at == g.check_at
        if g.remaining_zero:
            cond &= R.remaining == 0
        if g.cursor_below_total:
            cond &= R.queued_cursor < R.slices_total
        if g.unread:
            cond &= (R.ex_id == run.ex_id) & (R.buffered != True) & (R.presliced != True)  # noqa: E712
        return cond

    def _run_sets(self, run: Run, transition: RunTransition) -> tuple[dict[str, Any], list[str]]:
        """The fields the write sets (with the indexes' keys that follow them) and those it
        removes: a terminal write takes the run off the sweep and marks it for the tally."""
        target = transition.target
        sets: dict[str, Any] = dict(transition.sets)
        if target is not None:
            sets = {"status": target, **sets}
        removes: list[str] = []
        if transition.terminal:
            removes = ["check_at", "sweep_shard", "lease_token", "lease_expires_at"]
            sets = {k: v for k, v in sets.items() if k not in removes}
            sets["tally_shard"] = self._tally_shard(run.ex_id)
        elif sets.get("check_at") is not None:
            sets["sweep_shard"] = self._sweep_shard(run.ex_id)
        if target is not None:  # the listing index follows the status
            sets["ex_part"] = self._ex_part(run.ex_id, str(target), run.deleted)
        if sets.get("has_errors") is True and _one_slice_error(run, sets):
            sets["err_shard"] = self._err_shard(run.ex_id)
        return sets, removes

    def _finish_holding(self, run: Run, actions: list[Any], cond: Any) -> bool:
        """A terminal transition of a run that holds one of its job's active slots: the run
        and the job's slot set change together, so a slot is never leaked or freed early.
        A transaction returns no item: the caller builds the run it wrote."""
        R, J = self.m.run, self.m.job
        actions = [*actions, R.holds_slot.set(False)]

        def build(tx: TransactWrite) -> None:
            tx.update(
                R(run.job_id, run.slot),
                actions=actions,
                condition=cond & (R.holds_slot == True),  # noqa: E712 (a DynamoDB condition)
            )
            tx.update(
                J(run.job_id),
                actions=[J.active_slots.delete({run.slot})],
                condition=J.job_id.exists(),
            )

        return bool(self._transact(build))

    def stalled_runs(self, shard: int, now: float, limit: int = 100) -> list[Run]:
        R = self.m.run
        return self._get(
            lambda: [
                self._run(m) for m in R.sweep_index.query(shard, R.check_at <= now, limit=limit)
            ]
        )

    # ---- slices ---------------------------------------------------------------------------
    def _slice_model(self, sl: Slice) -> Any:
        return self.m.slice(
            sl.ex_id,
            sl.slice_id,
            order=sl.order,
            request=sl.request,
            state=str(sl.state),
            attempts=sl.attempts,
            lease_token=sl.lease_token,
            lease_expires_at=sl.lease_expires_at,
            not_before=sl.not_before,
            result=sl.result,
            error=sl.error,
            err_shard=self._err_shard(f"{sl.ex_id}/{sl.slice_id}")
            if sl.state == SliceState.error
            else None,
            created=sl.created,
            updated=sl.updated,
        )

    @staticmethod
    def _slice(m: Any) -> Slice:
        return Slice(
            ex_id=m.ex_id,
            slice_id=m.slice_id,
            order=int(m.order),
            request=dict(m.request or {}),
            state=SliceState(m.state),
            attempts=int(m.attempts or 0),
            lease_token=m.lease_token,
            lease_expires_at=m.lease_expires_at,
            not_before=m.not_before,
            result=m.result,
            error=m.error,
            created=float(m.created),
            updated=float(m.updated),
        )

    def put_slices(self, slices: Sequence[Slice]) -> int:
        S = self.m.slice
        new = 0
        for i in range(0, len(slices), TX_BATCH):
            chunk = [self._slice_model(s) for s in slices[i : i + TX_BATCH]]

            def build(tx: TransactWrite, chunk: list[Any] = chunk) -> None:
                for item in chunk:
                    tx.save(item, condition=S.slice_id.does_not_exist())

            if self._transact(build):
                new += len(chunk)
                continue
            for item in chunk:  # some exist already: keep them, add the rest one by one
                try:
                    item.save(condition=S.slice_id.does_not_exist())
                    new += 1
                except PutError as err:
                    if not _is_conditional(err):
                        raise _unavailable(err) from err
        return new

    def get_slice(self, ex_id: str, slice_id: str) -> Slice | None:
        def get() -> Slice | None:
            try:
                return self._slice(self.m.slice.get(ex_id, slice_id, consistent_read=True))
            except self.m.slice.DoesNotExist:
                return None

        return self._get(get)

    def list_slices(self, ex_id: str) -> list[Slice]:
        S = self.m.slice
        return self._get(lambda: [self._slice(m) for m in S.query(ex_id, consistent_read=True)])

    def _slice_update(self, ex_id: str, slice_id: str, actions: list[Any], cond: Any) -> Any:
        item = self.m.slice(ex_id, slice_id)
        try:
            item.update(actions=actions, condition=cond)
        except UpdateError as err:
            if _is_conditional(err):
                return None
            raise _unavailable(err) from err
        return item

    def claim_slice(
        self, ex_id: str, slice_id: str, token: str, now: float, lease_until: float
    ) -> Slice | None:
        S = self.m.slice
        pending = S.state == str(SliceState.pending)
        expired = (S.state == str(SliceState.started)) & (S.lease_expires_at < now)
        item = self._slice_update(
            ex_id,
            slice_id,
            [
                S.state.set(str(SliceState.started)),
                S.lease_token.set(token),
                S.lease_expires_at.set(lease_until),
                S.attempts.add(1),
                S.updated.set(now),
                S.not_before.remove(),
            ],
            S.slice_id.exists() & (pending | expired),
        )
        return None if item is None else self._slice(item)

    def release_slice(
        self, sl: Slice, token: str, not_before: float, error: str, now: float
    ) -> bool:
        S = self.m.slice
        item = self._slice_update(
            sl.ex_id,
            sl.slice_id,
            [
                S.state.set(str(SliceState.pending)),
                S.not_before.set(not_before),
                S.error.set(error[:4000]),
                S.updated.set(now),
                S.lease_token.remove(),
                S.lease_expires_at.remove(),
            ],
            (S.state == str(SliceState.started)) & (S.lease_token == token),
        )
        return item is not None

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
        S, R = self.m.slice, self.m.run
        held = S.lease_token == token if token is not None else S.lease_expires_at == expected_lease
        slice_actions = [
            S.state.set(str(SliceState.completed if completed else SliceState.error)),
            S.updated.set(now),
            S.lease_token.remove(),
            S.lease_expires_at.remove(),
        ]
        if completed:
            slice_actions.append(S.error.remove())
            if result is not None:
                slice_actions.append(S.result.set(result))
        else:
            slice_actions.append(S.error.set((error or "error")[:4000]))
            slice_actions.append(S.err_shard.set(self._err_shard(f"{sl.ex_id}/{sl.slice_id}")))
        counter = R.processed if completed else R.failed
        run_actions = [
            counter.add(1),
            R.remaining.add(-1),
            R.updated.set(now),
            R.check_at.set(now + run.lease_seconds),
            R.sweep_shard.set(self._sweep_shard(run.ex_id)),
        ]
        if not completed:
            run_actions.append(R.has_errors.set(True))
        if token is None:  # the sweep gives up on it: its worker never came back
            run_actions.append(R.workers_lost.add(1))

        def build(tx: TransactWrite) -> None:
            tx.update(
                self.m.slice(sl.ex_id, sl.slice_id),
                actions=slice_actions,
                condition=(S.state == str(SliceState.started)) & held,
            )
            tx.update(
                R(run.job_id, run.slot),
                actions=run_actions,
                condition=R.status.is_in(*[str(s) for s in EX_MACHINE.states - TERMINAL_EX]),
            )

        return self._transact(build)

    # ---- supervisor -----------------------------------------------------------------------
    @staticmethod
    def _supervisor(m: Any) -> SupervisorRecord:
        return SupervisorRecord(
            state=SupervisorState(m.state),
            last_tick_at=m.last_tick_at,
            ticks=int(m.ticks or 0),
            last_stats=m.last_stats,
            last_creating_tick=m.last_creating_tick,
            reason=m.reason,
            halted_at=m.halted_at,
            restarted_at=m.restarted_at,
            updated=float(m.updated),
            failed_ticks=int(m.failed_ticks or 0),
            last_failure_at=m.last_failure_at,
            last_failure=m.last_failure,
        )

    def get_supervisor(self) -> SupervisorRecord | None:
        def get() -> SupervisorRecord | None:
            try:
                return self._supervisor(self.m.supervisor.get(SUPERVISOR_KEY, consistent_read=True))
            except self.m.supervisor.DoesNotExist:
                return None

        return self._get(get)

    def init_supervisor(self, record: SupervisorRecord) -> SupervisorRecord:
        V = self.m.supervisor
        try:
            V(
                SUPERVISOR_KEY,
                state=str(record.state),
                ticks=0,
                reason=record.reason,
                halted_at=record.updated if record.state == SupervisorState.HALTED else None,
                updated=record.updated,
            ).save(condition=V.key.does_not_exist())
        except PutError as err:
            if not _is_conditional(err):
                raise _unavailable(err) from err
        found = self.get_supervisor()
        return found or record

    def _failure_actions(self, failure: TickFailure | None) -> list[Any]:
        if failure is None:
            return []
        V = self.m.supervisor
        return [
            V.failed_ticks.add(failure.count),
            V.last_failure_at.set(failure.at),
            V.last_failure.set(failure.reason),
        ]

    def record_tick(
        self,
        now: float,
        stats: dict[str, Any],
        failure: TickFailure | None = None,
        *,
        created: bool = False,
    ) -> None:
        V = self.m.supervisor
        actions = [
            V.last_tick_at.set(now),
            V.ticks.add(1),
            V.last_stats.set(stats),
            V.updated.set(now),
        ]
        if created:
            actions.append(V.last_creating_tick.set({"tick_at": now, **stats}))
        try:
            V(SUPERVISOR_KEY).update(
                actions=[*actions, *self._failure_actions(failure)],
                condition=V.key.exists(),
            )
        except UpdateError as err:
            if not _is_conditional(err):
                raise _unavailable(err) from err

    def record_tick_failure(self, failure: TickFailure) -> None:
        V = self.m.supervisor
        try:
            V(SUPERVISOR_KEY).update(
                actions=self._failure_actions(failure), condition=V.key.exists()
            )
        except UpdateError as err:
            if not _is_conditional(err):
                raise _unavailable(err) from err

    def set_supervisor_state(
        self, state: SupervisorState, reason: str | None, now: float
    ) -> SupervisorRecord:
        V = self.m.supervisor
        sources = SUPERVISOR_MACHINE.sources_for(state) | {state}
        item = V(SUPERVISOR_KEY)
        stamp = V.halted_at.set(now) if state == SupervisorState.HALTED else V.restarted_at.set(now)
        try:
            item.update(
                actions=[V.state.set(str(state)), V.reason.set(reason), V.updated.set(now), stamp],
                condition=V.state.is_in(*map(str, sources)),
            )
        except UpdateError as err:
            if _is_conditional(err):
                current = self.get_supervisor()
                raise Conflict(
                    f"supervisor cannot go to {state}",
                    current_state=str(current.state) if current else None,
                ) from err
            raise _unavailable(err) from err
        return self._supervisor(item)

    # ---- history and listings (OpenSpecimen's runs and jobs, Lens stats) ------------------
    # Every one is a Query on an index (never a Scan), paged with an opaque token that is
    # checked against the listing before it becomes the ExclusiveStartKey (paging.py).
    _RUN_CURSOR_KEYS = frozenset({"job_id", "slot", "created"})
    _LIST_CURSOR_KEYS = frozenset({"job_id", "list_key", "created"})
    _OWNER_CURSOR_KEYS = frozenset({"job_id", "owner", "created"})
    LIST_KEY = "job"

    def _created_condition(self, lo: float | None, hi: float | None) -> Any:
        R = self.m.run
        if lo is not None and hi is not None:
            return R.created.between(lo, hi)
        if lo is not None:
            return R.created >= lo
        if hi is not None:
            return R.created <= hi
        return None

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
        R = self.m.run
        wanted = None if statuses is None else sorted({str(s) for s in statuses})
        start = decode_cursor(
            cursor,
            names=self._RUN_CURSOR_KEYS,
            fixed={"job_id": job_id},
            number="created",
            lo=lo,
            hi=hi,
        )
        if limit < 1 or wanted == [] or (lo is not None and hi is not None and lo > hi):
            return [], None

        def page() -> tuple[list[Run], str | None]:
            it = R.created_index.query(
                job_id,
                self._created_condition(lo, hi),
                filter_condition=R.status.is_in(*wanted) if wanted else None,
                scan_index_forward=not newest_first,
                consistent_read=True,
                page_size=limit + 1,
                last_evaluated_key=start,
            )
            items, resume = take_page(it, limit)
            return [self._run(m) for m in items], encode_cursor(resume)

        return self._get(page)

    def count_runs_by_status(
        self, job_id: str, lo: float | None, hi: float | None
    ) -> dict[ExStatus, int]:
        R = self.m.run
        if lo is not None and hi is not None and lo > hi:
            return {}

        def count() -> dict[ExStatus, int]:
            counts: dict[ExStatus, int] = {}
            for m in R.created_index.query(
                job_id,
                self._created_condition(lo, hi),
                consistent_read=True,
                attributes_to_get=["status"],
            ):
                status = ExStatus(m.status)
                counts[status] = counts.get(status, 0) + 1
            return counts

        return self._get(count)

    def _job_filter(self, state: JobState | None) -> Any:
        J = self.m.job
        cond = J.deleted == False  # noqa: E712 (a DynamoDB condition)
        if state is not None:
            cond &= J.state == str(state)
        return cond

    def _job_page(
        self, index: Any, hash_key: str, limit: int, start: Any, newest_first: bool, state: Any
    ) -> tuple[list[Job], str | None]:
        if limit < 1:
            return [], None

        def page() -> tuple[list[Job], str | None]:
            it = index.query(
                hash_key,
                filter_condition=self._job_filter(state),
                scan_index_forward=not newest_first,
                page_size=limit + 1,
                last_evaluated_key=start,
            )
            items, resume = take_page(it, limit)
            return [self._job(m) for m in items], encode_cursor(resume)

        return self._get(page)

    def list_jobs(
        self,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = True,
        state: JobState | None = None,
    ) -> tuple[list[Job], str | None]:
        start = decode_cursor(
            cursor, names=self._LIST_CURSOR_KEYS, fixed={"list_key": self.LIST_KEY}
        )
        return self._job_page(
            self.m.job.list_index, self.LIST_KEY, limit, start, newest_first, state
        )

    def jobs_by_owner(
        self,
        owner: str,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = True,
        state: JobState | None = None,
    ) -> tuple[list[Job], str | None]:
        start = decode_cursor(cursor, names=self._OWNER_CURSOR_KEYS, fixed={"owner": owner})
        return self._job_page(self.m.job.owner_index, owner, limit, start, newest_first, state)

    # ---- Teraslice listings (GET /v1/jobs, /v1/ex, /v1/ex/errors) ---------------------------
    # Each reads one index per partition (a shard, for runs also a status) lazily, in the
    # asked order, and merges them (paging.merged_window): a Query per partition and only
    # as many items as the window needs, never a Scan.
    def _streams(
        self, index: Any, parts: Iterable[Any], ascending: bool, window: int, filt: Any = None
    ) -> list[Iterator[Any]]:
        page = min(window, 1000) + 1
        streams = [
            iter(
                index.query(
                    part,
                    filter_condition=filt,
                    scan_index_forward=ascending,
                    page_size=page,
                )
            )
            for part in parts
        ]
        if len(streams) <= 1:
            return streams
        # the merge needs every partition's first item: read the first pages side by side
        with ThreadPoolExecutor(min(LIST_CONCURRENCY, len(streams))) as pool:
            firsts = list(pool.map(lambda it: next(it, None), streams))
        return [
            itertools.chain([first], it) if first is not None else iter(())
            for first, it in zip(firsts, streams, strict=True)
        ]

    def job_window(
        self, deleted: bool, active: bool | None, sort: Sort, start: int, size: int
    ) -> list[Job]:
        J = self.m.job
        index = J.jobs_created_index if sort.field == "created" else J.jobs_updated_index
        filt = None
        if active is True:
            filt = J.active.does_not_exist() | (J.active == True)  # noqa: E712
        elif active is False:
            filt = J.active == False  # noqa: E712
        flag = "deleted" if deleted else "live"
        parts = [f"{flag}#{n}" for n in range(self.settings.list_shards)]

        def read() -> list[Job]:
            streams = self._streams(index, parts, sort.ascending, start + size, filt)
            found = merged_window(
                streams, lambda m: (getattr(m, sort.field), m.job_id), start, size, sort.ascending
            )
            return [self._job(m) for m in found]

        return self._get(read)

    def run_window(
        self, statuses: Iterable[ExStatus], deleted: bool, sort: Sort, start: int, size: int
    ) -> list[Run]:
        R = self.m.run
        index = R.ex_created_index if sort.field == "created" else R.ex_updated_index
        flag = "deleted" if deleted else "live"
        parts = [
            f"{status}#{flag}#{n}"
            for status in sorted(set(statuses))
            for n in range(self.settings.list_shards)
        ]

        def read() -> list[Run]:
            streams = self._streams(index, parts, sort.ascending, start + size)
            found = merged_window(
                streams, lambda m: (getattr(m, sort.field), m.ex_id), start, size, sort.ascending
            )
            return [self._run(m) for m in found]

        return self._get(read)

    def error_window(self, sort: Sort, start: int, size: int) -> list[Slice | Run]:
        R, S = self.m.run, self.m.slice
        created = sort.field == "created"
        slice_index = S.errors_created_index if created else S.errors_updated_index
        run_index = R.errors_created_index if created else R.errors_updated_index
        shards = range(self.settings.list_shards)

        def key(m: Any) -> tuple[float, str, str]:
            return (getattr(m, sort.field), m.ex_id, getattr(m, "slice_id", ""))

        def read() -> list[Slice | Run]:
            window = start + size
            streams = self._streams(slice_index, shards, sort.ascending, window)
            streams += self._streams(run_index, shards, sort.ascending, window)
            found = merged_window(streams, key, start, size, sort.ascending)
            return [self._slice(m) if isinstance(m, S) else self._run(m) for m in found]

        return self._get(read)

    def update_job(
        self,
        job: Job,
        definition: dict[str, Any],
        schedule: tuple[JobState, float | None, float | None] | None,
        now: float,
    ) -> bool:
        J = self.m.job
        if schedule is None:
            actions = [J.version.set(job.version + 1), J.updated.set(now)]
        else:
            state, nxt, anchor = schedule
            actions = self._job_schedule_actions(job, state, nxt, now)
            if anchor is not None:
                actions.append(J.anchor.set(anchor))
        actions += [
            J.definition.set(definition),
            J.name.set(str(definition.get("name", ""))),
            J.owner.set(str(definition.get("owner", "anonymous"))),
        ]
        return self._job_update(job, actions)

    def set_job_active(self, job: Job, active: bool, now: float) -> bool:
        J = self.m.job
        return self._job_update(
            job, [J.active.set(active), J.version.set(job.version + 1), J.updated.set(now)]
        )

    def delete_job(self, job: Job, now: float) -> bool:
        J = self.m.job
        actions = [
            J.deleted.set(True),
            J.deleted_on.set(now),
            J.active.set(False),
            J.updated.set(now),
            J.version.set(job.version + 1),
            J.list_part.set(self._list_part(job.job_id, True)),
            J.due_shard.remove(),
            J.next_fire_at.remove(),
        ]
        idle = J.active_slots.does_not_exist() | (size(J.active_slots) == 0)  # type: ignore[no-untyped-call]
        return self._job_update(job, actions, idle)

    def _job_update(self, job: Job, actions: list[Any], extra: Any = None) -> bool:
        """One conditional update of a job that is still at job.version and not deleted."""
        J = self.m.job
        cond = (J.version == job.version) & (
            J.deleted.does_not_exist() | (J.deleted == False)  # noqa: E712
        )
        if extra is not None:
            cond &= extra
        try:
            J(job.job_id).update(actions=actions, condition=cond)
            return True
        except UpdateError as err:
            if _is_conditional(err):
                return False
            raise _unavailable(err) from err

    def mark_runs_deleted(self, job_id: str) -> int:
        R = self.m.run

        def mark() -> int:
            marked = 0
            for m in R.query(job_id, consistent_read=True):
                if m.deleted:
                    continue
                try:
                    R(job_id, m.slot).update(
                        actions=[
                            R.deleted.set(True),
                            R.ex_part.set(self._ex_part(m.ex_id, m.status, True)),
                        ],
                        condition=R.status.is_in(*map(str, TERMINAL_EX)),
                    )
                    marked += 1
                except UpdateError as err:
                    if not _is_conditional(err):
                        raise _unavailable(err) from err
            return marked

        return self._get(mark)

    # ---- repairs (seed 000: the two manual fixes of a hanging run) --------------------------
    def resolve_complete(self, run: Run, open_slices: Sequence[Slice], now: float) -> bool:
        R, S, J = self.m.run, self.m.slice, self.m.job
        if len(open_slices) > MAX_TX_ITEMS - 2:
            raise Conflict(
                f"{len(open_slices)} open slices: more than one transaction can hold",
                ex_id=run.ex_id,
            )
        live = [str(s) for s in EX_MACHINE.states - TERMINAL_EX]

        def build(tx: TransactWrite) -> None:
            tx.update(
                R(run.job_id, run.slot),
                actions=[
                    R.status.set(str(ExStatus.completed)),
                    R.ex_part.set(self._ex_part(run.ex_id, str(ExStatus.completed), run.deleted)),
                    R.processed.set(run.slices_total - run.failed if run.slices_total else 1),
                    R.remaining.set(0),
                    R.finished_at.set(now),
                    R.updated.set(now),
                    R.reason.set("resolved: completed by an operator"),
                    R.holds_slot.set(False),
                    R.tally_shard.set(self._tally_shard(run.ex_id)),
                    R.check_at.remove(),
                    R.sweep_shard.remove(),
                    R.lease_token.remove(),
                    R.lease_expires_at.remove(),
                ],
                condition=(R.ex_id == run.ex_id) & R.status.is_in(*live),
            )
            for sl in open_slices:
                tx.update(
                    S(sl.ex_id, sl.slice_id),
                    actions=[
                        S.state.set(str(SliceState.completed)),
                        S.updated.set(now),
                        S.error.set("resolved: completed by an operator"),
                        S.lease_token.remove(),
                        S.lease_expires_at.remove(),
                    ],
                    condition=S.state.is_in(str(SliceState.pending), str(SliceState.started)),
                )
            if run.holds_slot:
                tx.update(
                    J(run.job_id),
                    actions=[J.active_slots.delete({run.slot})],
                    condition=J.job_id.exists(),
                )

        return self._transact(build)

    def reset_run(self, run: Run, fresh: Run, slices: Sequence[Slice], limit: int | None) -> bool:
        R, S, J = self.m.run, self.m.slice, self.m.job
        if len(slices) > MAX_TX_ITEMS - 2:
            raise Conflict(
                f"{len(slices)} slices: more than one transaction can delete", ex_id=run.ex_id
            )
        takes_slot = limit is not None and not run.holds_slot
        fresh.holds_slot = limit is not None
        replaced = R.ex_id == run.ex_id
        # an ended run not yet folded is counted as it is replaced, or its figures would be lost
        replaced &= R.tally_shard.exists() if run.tally_pending else R.tally_shard.does_not_exist()

        def build(tx: TransactWrite) -> None:
            tx.save(self._run_model(fresh), condition=replaced)
            if run.tally_pending:
                shard = self._tally_shard(run.ex_id)
                self._add_to_counters(tx, shard, _totals_of(run), fresh.updated)
            for sl in slices:
                tx.delete(S(sl.ex_id, sl.slice_id))
            if takes_slot:
                assert limit is not None
                tx.update(
                    J(run.job_id),
                    actions=[J.active_slots.add({run.slot})],
                    condition=J.job_id.exists() & self._has_room(limit),
                )

        return self._transact(build)

    def live_runs(self, limit: int = 1000) -> list[Run]:
        R = self.m.run

        def shard_runs(shard: int) -> list[Run]:
            return [self._run(m) for m in R.sweep_index.query(shard, limit=limit)]

        out: list[Run] = []
        for shard in range(self.settings.lease_shards):
            out += self._get(lambda shard=shard: shard_runs(shard))  # type: ignore[misc]
        return out[:limit]

    # ---- cluster counters -------------------------------------------------------------------
    def _add_to_counters(
        self, tx: TransactWrite, shard: int, totals: ClusterTotals, now: float
    ) -> None:
        C = self.stats
        tx.update(
            C(STATS_KEY.format(shard)),
            actions=[
                *(getattr(C, k).add(v) for k, v in totals.as_dict().items()),
                C.updated.set(now),
            ],
        )

    def _marked(self, shard: int, limit: int | None = None) -> list[Any]:
        R = self.m.run
        return self._get(lambda: list(R.tally_index.query(shard, limit=limit)))

    def fold_tallies(self, now: float, limit: int = 240) -> int:
        R = self.m.run
        folded = 0
        for shard in range(self.settings.stats_shards):
            if folded >= limit:
                break
            marked = self._marked(shard, limit - folded)
            for i in range(0, len(marked), FOLD_BATCH):
                batch = marked[i : i + FOLD_BATCH]

                def build(tx: TransactWrite, batch: list[Any] = batch, shard: int = shard) -> None:
                    for m in batch:
                        tx.update(
                            R(m.job_id, m.slot),
                            actions=[R.tally_shard.remove()],
                            condition=(R.ex_id == m.ex_id) & (R.tally_shard == shard),
                        )
                    total = sum((_totals_of(m) for m in batch), ClusterTotals())
                    self._add_to_counters(tx, shard, total, now)

                if self._transact(build):
                    folded += len(batch)
                    continue
                for m in batch:  # one was taken by a concurrent fold: add the rest singly

                    def single(tx: TransactWrite, m: Any = m, shard: int = shard) -> None:
                        build(tx, [m], shard)

                    folded += int(self._transact(single))
        return folded

    def cluster_totals(self) -> ClusterTotals:
        C = self.stats
        keys = [STATS_KEY.format(i) for i in range(self.settings.stats_shards)]
        total = ClusterTotals()
        try:
            counters = list(C.batch_get(keys, consistent_read=True))
        except PynamoDBException as err:
            raise _unavailable(err) from err
        for c in counters:
            total += ClusterTotals(
                **{k: int(getattr(c, k) or 0) for k in ClusterTotals().as_dict()}
            )
        for shard in range(self.settings.stats_shards):
            for m in self._marked(shard):
                total += _totals_of(m)
        return total

    # ---- alerts ---------------------------------------------------------------------------
    def put_alert(self, alert: Alert) -> None:
        A = self.m.alert
        try:
            A(
                "alert",
                f"{alert.created:017.6f}#{alert.alert_id}",
                created=alert.created,
                reason=alert.reason,
                job_id=alert.job_id,
                ex_id=alert.ex_id,
                slot=alert.slot,
                detail=alert.detail,
            ).save()
        except PutError as err:
            raise _unavailable(err) from err

    def list_alerts(self, limit: int = 100) -> list[Alert]:
        A = self.m.alert
        return self._get(
            lambda: [
                Alert(
                    alert_id=m.alert_id.split("#", 1)[1],
                    created=float(m.created),
                    reason=m.reason,
                    job_id=m.job_id,
                    ex_id=m.ex_id,
                    slot=m.slot,
                    detail=m.detail,
                )
                for m in A.query("alert", scan_index_forward=False, limit=limit)
            ]
        )
