"""Workers: start a run (slice it) and process slices, each step a conditional write."""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from chalicelib.domain.errors import DomainError
from chalicelib.domain.runs import Run
from chalicelib.domain.slices import Slice, retry_delay, slice_id_for
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus
from chalicelib.ops.registry import SliceContext, process, slice_requests
from chalicelib.ports import Clock, Queue, RunUpdate, Store

log = logging.getLogger(__name__)
EARLY_WAIT_LIMIT = 1.5


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class WorkerService:
    """What the start and slice queue handlers do with one message each."""

    def __init__(
        self,
        store: Store,
        queue: Queue,
        clock: Clock,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store, self.queue, self.clock, self.sleep = store, queue, clock, sleep

    # ---- start ----------------------------------------------------------------------------
    def handle_start(self, job_id: str, slot: str) -> str:
        """Slice a pending run and set it going; a duplicate or stale message does nothing.
        Returns what happened, for logs and tests."""
        run = self.store.get_run(job_id, slot)
        if run is None or run.status in TERMINAL_EX:
            return "dropped"
        now = self.clock.now()
        early = run.scheduled_start - now
        if early > EARLY_WAIT_LIMIT:
            self.queue.send_starts([(job_id, slot, min(900, int(early)))])
            return "early"
        if early > 0:
            self.sleep(early)
            now = self.clock.now()
        claimable = run.status == ExStatus.pending or (
            run.status in (ExStatus.initializing, ExStatus.running)
            and (run.lease_expires_at is None or run.lease_expires_at < now)
            and (run.status != ExStatus.running or run.inline)
        )
        if not claimable:
            return "busy"
        try:
            requests = slice_requests(run.operations, run.args)
        except Exception as exc:  # a reader that cannot slice fails the run, once
            self._fail_unsliced(run, now, _error_text(exc))
            return "failed"
        if len(requests) == 0:
            done = self.store.update_run(
                run,
                RunUpdate(
                    set={
                        "status": ExStatus.completed,
                        "started_at": now,
                        "finished_at": now,
                        "updated": now,
                    }
                ),
                statuses=[ExStatus.pending],
            )
            return "completed" if done else "busy"
        if len(requests) == 1:
            return self._run_inline(run, requests[0], now)
        return self._initialize(run, requests, now)

    def _fail_unsliced(self, run: Run, now: float, error: str) -> None:
        self.store.update_run(
            run,
            RunUpdate(
                set={
                    "status": ExStatus.failed,
                    "has_errors": True,
                    "finished_at": now,
                    "updated": now,
                    "errors": [{"slice_id": None, "error": error}],
                }
            ),
            statuses=[ExStatus.pending, ExStatus.initializing],
        )

    def _run_inline(self, run: Run, request: dict[str, Any], now: float) -> str:
        """A one-slice run: the run record is its own slice (claim, process, finish)."""
        token = uuid.uuid4().hex
        lease = now + run.lease_seconds
        claimed = self.store.update_run(
            run,
            RunUpdate(
                set={
                    "status": ExStatus.running,
                    "inline": True,
                    "slices_total": 1,
                    "remaining": 1,
                    "queued_cursor": 1,
                    "lease_token": token,
                    "lease_expires_at": lease,
                    "check_at": lease + 1,
                    "started_at": run.started_at or now,
                    "updated": now,
                },
                add={"attempts": 1},
            ),
            statuses=[ExStatus.pending, ExStatus.initializing, ExStatus.running],
            lease_expired_before=now,
        )
        if claimed is None:
            return "busy"
        ctx = SliceContext(claimed.ex_id, claimed.job_id, 0, claimed.attempts, claimed.args)
        try:
            result = process(claimed.operations, request, ctx)
        except Exception as exc:
            return self._inline_failed(claimed, token, _error_text(exc))
        end = self.clock.now()
        done = self.store.update_run(
            claimed,
            RunUpdate(
                set={
                    "status": ExStatus.completed,
                    "processed": 1,
                    "remaining": 0,
                    "result": result,
                    "finished_at": end,
                    "updated": end,
                }
            ),
            statuses=[ExStatus.running],
            lease_token=token,
        )
        return "completed" if done else "lost-lease"

    def _inline_failed(self, run: Run, token: str, error: str) -> str:
        now = self.clock.now()
        errors = [{"slice_id": slice_id_for(0), "attempt": run.attempts, "error": error}]
        if run.attempts <= run.max_retries:
            delay = retry_delay(run.attempts)
            kept = self.store.update_run(
                run,
                RunUpdate(
                    set={
                        "lease_token": None,
                        "lease_expires_at": None,
                        "check_at": now + delay + run.lease_seconds,
                        "errors": errors,
                        "updated": now,
                    }
                ),
                statuses=[ExStatus.running],
                lease_token=token,
            )
            if kept:
                self.queue.send_starts([(run.job_id, run.slot, delay)])
            return "retry"
        self.store.update_run(
            run,
            RunUpdate(
                set={
                    "status": ExStatus.failed,
                    "failed": 1,
                    "remaining": 0,
                    "has_errors": True,
                    "errors": errors,
                    "finished_at": now,
                    "updated": now,
                }
            ),
            statuses=[ExStatus.running],
            lease_token=token,
        )
        return "failed"

    def _initialize(self, run: Run, requests: list[dict[str, Any]], now: float) -> str:
        token = uuid.uuid4().hex
        lease = now + run.lease_seconds
        claimed = self.store.update_run(
            run,
            RunUpdate(
                set={
                    "status": ExStatus.initializing,
                    "lease_token": token,
                    "lease_expires_at": lease,
                    "check_at": lease + 1,
                    "started_at": run.started_at or now,
                    "updated": now,
                }
            ),
            statuses=[ExStatus.pending, ExStatus.initializing],
            lease_expired_before=now,
        )
        if claimed is None:
            return "busy"
        slices = [
            Slice(run.ex_id, slice_id_for(i), i, request, created=now, updated=now)
            for i, request in enumerate(requests)
        ]
        self.store.put_slices(slices)
        total = len(slices)
        first = min(max(1, run.workers), total)
        end = self.clock.now()
        running = self.store.update_run(
            claimed,
            RunUpdate(
                set={
                    "status": ExStatus.running,
                    "slices_total": total,
                    "remaining": total,
                    "queued_cursor": first,
                    "lease_token": None,
                    "lease_expires_at": None,
                    "check_at": end + run.lease_seconds,
                    "updated": end,
                }
            ),
            statuses=[ExStatus.initializing],
            lease_token=token,
        )
        if running is None:
            return "lost-lease"
        self._send_slices(running, range(first))
        return "running"

    # ---- slices ---------------------------------------------------------------------------
    def _send_slices(self, run: Run, orders: range | list[int], delay: int = 0) -> None:
        self.queue.send_slices(
            [(run.job_id, run.slot, run.ex_id, slice_id_for(i), delay) for i in orders]
        )

    def handle_slice(self, job_id: str, slot: str, ex_id: str, slice_id: str) -> str:
        """Claim one slice, run the processors, record the outcome exactly once."""
        run = self.store.get_run(job_id, slot)
        if run is None or run.ex_id != ex_id or run.status != ExStatus.running:
            return "dropped"
        now = self.clock.now()
        token = uuid.uuid4().hex
        sl = self.store.claim_slice(ex_id, slice_id, token, now, now + run.lease_seconds)
        if sl is None:
            return "duplicate"
        ctx = SliceContext(ex_id, job_id, sl.order, sl.attempts, run.args)
        try:
            result = process(run.operations, sl.request, ctx)
        except Exception as exc:
            error = _error_text(exc)
            end = self.clock.now()
            if sl.attempts <= run.max_retries:
                delay = retry_delay(sl.attempts)
                if self.store.release_slice(sl, token, end + delay, error, end):
                    self._send_slices(run, [sl.order], delay)
                return "retry"
            ok = self.store.finish_slice(
                sl,
                run,
                token=token,
                expected_lease=None,
                completed=False,
                result=None,
                error=error,
                now=end,
            )
            if ok:
                self.after_slice(run, end)
            return "failed" if ok else "lost-lease"
        end = self.clock.now()
        ok = self.store.finish_slice(
            sl,
            run,
            token=token,
            expected_lease=None,
            completed=True,
            result=result,
            error=None,
            now=end,
        )
        if not ok:
            return "lost-lease"
        self.after_slice(run, end)
        return "completed"

    def after_slice(self, run: Run, now: float) -> None:
        """Hand out the next slice, or, when none remain, let exactly one writer finalize."""
        nxt = self.store.update_run(
            run,
            RunUpdate(set={"updated": now}, add={"queued_cursor": 1}),
            statuses=[ExStatus.running],
            cursor_below_total=True,
        )
        if nxt is not None:
            self._send_slices(nxt, [nxt.queued_cursor - 1])
            return
        current = self.store.get_run(run.job_id, run.slot)
        if current is not None and current.status == ExStatus.running and current.remaining == 0:
            self.finalize(current, now)

    def finalize(self, run: Run, now: float) -> bool:
        """running -> completed / failed, only when no slice remains; one caller wins."""
        done = self.store.update_run(
            run,
            RunUpdate(
                set={
                    "status": run.final_status,
                    "finished_at": now,
                    "updated": now,
                    "has_errors": run.failed > 0,
                }
            ),
            statuses=[ExStatus.running],
            remaining_zero=True,
        )
        return done is not None

    def safe(self, fn: Callable[[], str]) -> str:
        """Run a handler step; domain errors other than store outages are final for it."""
        try:
            return fn()
        except DomainError as err:
            if err.status_code >= 500:
                raise
            log.warning("message dropped: %s", err.message)
            return "invalid"
