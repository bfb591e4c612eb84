"""Execution control (Teraslice, seed 001): stop, pause, resume and workers, on one
execution or on a job's current one. Each is a conditional transition plus a nudge."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable
from typing import Any

from chalicelib.domain.errors import Conflict, InvalidInput, NotFound
from chalicelib.domain.identity import SYSTEM, Principal, owner_of
from chalicelib.domain.jobs import JobDefinition
from chalicelib.domain.limits import too_many_workers
from chalicelib.domain.runs import Run, Trigger, manual_slot
from chalicelib.domain.slices import Slice, slice_id_for
from chalicelib.domain.transitions import LEDGER_EX, TERMINAL_EX, ExStatus, SliceState
from chalicelib.ops.registry import slice_requests
from chalicelib.ports import Clock, Sort, StartMessage, Store
from chalicelib.services.jobs import current_run
from chalicelib.services.worker import WorkerService

MAX_BLOCKING_SECONDS = 25.0  # under API Gateway's 29 s


def run_error_slices(run: Run) -> list[Slice]:
    """A one-slice run's last error (kept on the run itself) as a slice record."""
    return [
        Slice(
            run.ex_id,
            str(e.get("slice_id") or "000000"),
            0,
            {},
            state=SliceState.error,
            attempts=run.attempts,
            error=str(e.get("error")),
            created=run.created,
            updated=run.updated,
        )
        for e in run.errors[-1:]
    ]


class ExecutionService:
    """What an operator does to a running execution."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        worker: WorkerService,
        sleep: Callable[[float], None] = time.sleep,
        max_workers: int = 1000,
    ) -> None:
        self.store, self.clock, self.worker, self.sleep = store, clock, worker, sleep
        self.max_workers = max_workers
        self.who = SYSTEM

    def as_(self, who: Principal) -> ExecutionService:
        """The same control on behalf of `who`: another principal's execution is NotFound
        unless it is an admin; listings show only its own."""
        scoped = copy.copy(self)
        scoped.who = who
        return scoped

    def by_ex(self, ex_id: str) -> Run:
        run = self.store.get_run_by_ex(ex_id)
        if run is None or not self.who.sees(owner_of(run.config)):
            raise NotFound(f"execution {ex_id} not found", ex_id=ex_id)
        return run

    def current_of(self, job_id: str) -> Run:
        """A job's current execution: its newest run that is not a ledger record."""
        job = self.store.get_job(job_id)
        if job is None or not self.who.sees(owner_of(job.definition)):
            raise NotFound(f"job {job_id} not found", job_id=job_id)
        return current_run(self.store, job_id)

    def stop(self, run: Run, timeout: float | None, blocking: bool) -> dict[str, Any]:
        """Stop: a pending execution stops at once; a started one stops taking slices and
        ends as `stopped` once nothing is in flight. With `blocking`, wait (up to
        `timeout` seconds, at most 25) for that end."""
        if run.status in TERMINAL_EX:
            return {"status": str(run.status)}
        now = self.clock.now()
        self.worker.stop_runs(run.job_id, [run.slot], now, "stopped by request")
        current = self.store.get_run(run.job_id, run.slot) or run
        if current.status == ExStatus.stopping:
            self.worker.stop_if_idle(current, now)
        deadline = time.monotonic() + min(timeout or MAX_BLOCKING_SECONDS, MAX_BLOCKING_SECONDS)
        while True:
            current = self.store.get_run(run.job_id, run.slot) or current
            if current.status in TERMINAL_EX or not blocking or time.monotonic() >= deadline:
                return {"status": str(current.status)}
            self.sleep(0.5)
            if current.status == ExStatus.stopping:
                self.worker.stop_if_idle(current, self.clock.now())

    def pause(self, run: Run) -> dict[str, Any]:
        """running -> paused: no slice is handed out until resumed (in-flight ones finish)."""
        if run.status == ExStatus.paused:
            return {"status": "paused"}
        now = self.clock.now()
        paused = self.worker.apply(run, run.pause(now))
        if paused is None:
            raise self._conflict(run, "pause")
        return {"status": "paused"}

    def resume(self, run: Run) -> dict[str, Any]:
        """paused -> running, then the slices handed out meanwhile go out again."""
        if run.status == ExStatus.running:
            return {"status": "running"}
        now = self.clock.now()
        resumed = self.worker.apply(run, run.resume(now))
        if resumed is None:
            raise self._conflict(run, "resume")
        if resumed.inline:
            if resumed.lease_expires_at is None or resumed.lease_expires_at < now:
                self.worker.queue.send_starts([StartMessage(run.job_id, run.slot)])
        elif resumed.slices_total:
            self.worker.refill(resumed, now)
        return {"status": "running"}

    def workers(self, run: Run, add: int | None, remove: int | None, total: int | None) -> str:
        """Change how many slices of the execution may be in flight at once: at least one,
        at most the stage's `max_workers` (more is refused, never cut down)."""
        given = {
            k: v for k, v in (("add", add), ("remove", remove), ("total", total)) if v is not None
        }
        if len(given) != 1:
            raise InvalidInput(
                "give exactly one of add, remove, total",
                [
                    {"field": k, "reason": "give exactly one of add, remove, total"}
                    for k in (given or {"add": 0, "remove": 0, "total": 0})
                ],
            )
        ((field, value),) = given.items()
        if value < 0 or (field == "total" and value < 1):
            raise InvalidInput(
                f"{field}: must be a positive whole number",
                [{"field": field, "reason": "must be a positive whole number"}],
            )
        target = {"add": run.workers + value, "remove": run.workers - value, "total": value}
        if target[field] > self.max_workers:
            raise too_many_workers(field, target[field], self.max_workers)
        workers = max(1, target[field])
        if run.status in TERMINAL_EX:
            raise self._conflict(run, "change the workers of")
        now = self.clock.now()
        changed = self.worker.apply(run, run.set_workers(workers, now))
        if changed is None:
            raise self._conflict(run, "change the workers of")
        if workers > run.workers and changed.status == ExStatus.running and changed.slices_total:
            self.worker.refill(changed, now, resend_handed_out=False)
        verb = {"add": "add", "remove": "removed", "total": "set"}[field]
        return f"{value} workers have been {verb} for execution: {run.ex_id}"

    def resolve(self, run: Run, action: str | None) -> dict[str, Any]:
        """Seed 000's two repairs of a hanging run, each one transaction:
        `complete` marks the run and its open slices completed (the slot stays done and the
        job stays advanced); `rerun` replaces the run by a fresh execution of the same
        scheduled start (its old slices deleted), so the slot runs again."""
        if action not in ("complete", "rerun"):
            raise InvalidInput(
                f"action: expected 'complete' or 'rerun', got {action!r}",
                [{"field": "action", "reason": "expected 'complete' or 'rerun'"}],
            )
        now = self.clock.now()
        slices = self.store.list_slices(run.ex_id)
        if action == "complete":
            if run.status == ExStatus.completed:
                return {"status": "completed", "ex_id": run.ex_id}
            if run.status in TERMINAL_EX:
                raise self._conflict(run, "complete")
            open_slices = [s for s in slices if s.state in (SliceState.pending, SliceState.started)]
            if not self.store.resolve_complete(run, open_slices, now):
                raise self._conflict(run, "complete")
            self._told_completed(run)
            if run.holds_slot:
                self.worker.nudge_buffered(run.job_id)
            return {"status": "completed", "ex_id": run.ex_id}
        spec = JobDefinition.model_validate(run.config)
        fresh = Run(
            job_id=run.job_id,
            slot=run.slot,
            ex_id=str(uuid.uuid4()),
            scheduled_start=run.scheduled_start,
            config=run.config,
            trigger=Trigger.recover,
            args=run.args,
            created=now,
            updated=now,
            workers=run.workers,
            start_after=None,
            check_at=now + spec.lease_seconds,
            reason=f"rerun of {run.ex_id}",
        )
        if not self.store.reset_run(run, fresh, slices, spec.active_limit):
            raise self._conflict(run, "rerun")
        self.worker.queue.send_starts([StartMessage(run.job_id, run.slot)])
        return {"status": "pending", "ex_id": fresh.ex_id, "replaces": run.ex_id}

    def _told_completed(self, run: Run) -> None:
        """A run completed by hand makes its `succeeded` event, as one that completed by
        itself does (its job's `notify` decides whether anyone is told)."""
        done = self.store.get_run(run.job_id, run.slot)
        if done is not None and done.ex_id == run.ex_id and done.status == ExStatus.completed:
            self.worker.seen_ended(done)

    def recover(self, run: Run, cleanup_type: str | None, config: dict[str, Any]) -> Run:
        """A new execution of a terminal one, reprocessing only the chosen slices (seed 001):
        none given: every slice not completed (resume where it left off); `all`: error or
        started; `errors`: error; `pending`: neither completed nor failed. `config` is the
        old execution's (ex route) or the job's current one (job route)."""
        choose = {
            None: {SliceState.pending, SliceState.started, SliceState.error},
            "all": {SliceState.error, SliceState.started},
            "errors": {SliceState.error},
            "pending": {SliceState.pending, SliceState.started},
        }
        if cleanup_type not in choose:
            raise InvalidInput(
                f"cleanup_type: expected all, errors or pending, got {cleanup_type!r}",
                [{"field": "cleanup_type", "reason": "expected all, errors or pending"}],
            )
        if run.status not in TERMINAL_EX or run.status in LEDGER_EX:
            raise self._conflict(run, "recover")
        job = self.store.get_job(run.job_id)
        if job is None or job.deleted:
            raise Conflict(
                f"cannot recover execution {run.ex_id}: its job is deleted",
                ex_id=run.ex_id,
                job_id=run.job_id,
                current_state="deleted",
            )
        states = choose[cleanup_type]
        if run.inline or not run.slices_total:
            failed_inline = run.status != ExStatus.completed
            requests = slice_requests(config["operations"], run.args) if failed_inline else []
            chosen = SliceState.error in states or cleanup_type is None
            wanted = list(enumerate(requests)) if chosen else []
        else:
            listed = self.store.list_slices(run.ex_id)
            wanted = [(s.order, s.request) for s in listed if s.state in states]
        if not wanted:
            raise Conflict(
                f"execution {run.ex_id} has no slice to recover ({cleanup_type})", ex_id=run.ex_id
            )
        now = self.clock.now()
        spec = JobDefinition.model_validate(config)
        fresh = Run(
            job_id=run.job_id,
            slot=manual_slot(now),
            ex_id=str(uuid.uuid4()),
            scheduled_start=now,
            config=config,
            trigger=Trigger.recover,
            args=run.args,
            created=now,
            updated=now,
            workers=spec.workers,
            slices_total=len(wanted),
            presliced=True,
            recovered_from=run.ex_id,
            check_at=now + spec.lease_seconds,
            reason=f"recovery of {run.ex_id} ({cleanup_type or 'resume'})",
        )
        self.store.put_slices(
            [
                Slice(fresh.ex_id, slice_id_for(i), order, req, created=now, updated=now)
                for i, (order, req) in enumerate(wanted)
            ]
        )
        if not self.store.create_run(fresh, limit=spec.active_limit):
            raise Conflict(f"job {run.job_id} is at its limit of active runs", job_id=run.job_id)
        self.worker.queue.send_starts([StartMessage(run.job_id, fresh.slot)])
        return fresh

    def slices(self, run: Run, state: str | None) -> list[Slice]:
        """An execution's slices in order, optionally of one state."""
        if state is not None and state not in {str(s) for s in SliceState}:
            raise InvalidInput(
                f"state: expected one of {', '.join(map(str, SliceState))}, got {state!r}",
                [{"field": "state", "reason": "expected " + ", ".join(map(str, SliceState))}],
            )
        return [s for s in self.store.list_slices(run.ex_id) if state in (None, str(s.state))]

    def errors(self, runs: list[Run]) -> list[Slice]:
        """The slices in error of these executions, oldest first; a one-slice run's error
        (kept on the run itself) as a slice record."""
        out: list[Slice] = []
        for run in runs:
            if not run.has_errors:
                continue
            if run.inline or not run.slices_total:
                out += run_error_slices(run)
                continue
            out += [s for s in self.store.list_slices(run.ex_id) if s.state == SliceState.error]
        return sorted(out, key=lambda s: s.updated)

    def listing(
        self, statuses: list[ExStatus] | None, deleted: bool, sort: Sort, start: int, size: int
    ) -> list[Run]:
        """Teraslice's GET /v1/ex: a window of executions in `sort` order. Without
        `statuses`, every status but the ledger's (skipped / missed slots never ran: they
        are listed only when asked for by status)."""
        wanted = statuses or [s for s in ExStatus if s not in LEDGER_EX]
        return self.store.run_window(wanted, deleted, sort, start, size, owner=self.who.scope)

    def all_errors(self, sort: Sort, start: int, size: int) -> list[tuple[Slice, str]]:
        """GET /v1/ex/errors: every execution's errors in `sort` order, each with its
        job_id (a slice names only its execution)."""
        out: list[tuple[Slice, str]] = []
        jobs: dict[str, str] = {}
        for item in self.store.error_window(sort, start, size, owner=self.who.scope):
            if isinstance(item, Run):
                out += [(sl, item.job_id) for sl in run_error_slices(item)[:1]]
                continue
            if item.ex_id not in jobs:
                jobs[item.ex_id] = self.by_ex(item.ex_id).job_id
            out.append((item, jobs[item.ex_id]))
        return out

    def _conflict(self, run: Run, what: str) -> Conflict:
        current = self.store.get_run(run.job_id, run.slot) or run
        return Conflict(
            f"cannot {what} execution {run.ex_id}: it is {current.status}",
            ex_id=run.ex_id,
            current_state=str(current.status),
        )
