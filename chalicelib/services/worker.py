"""Workers: start a run (slice it) and process slices, each step a conditional write."""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from chalicelib.domain.jobs import JobDefinition
from chalicelib.domain.runs import START_LEAD_S, Run, StartHint
from chalicelib.domain.slices import Slice, retry_delay, slice_id_for
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus, SliceState
from chalicelib.ops.registry import (
    OpSource,
    OpSpec,
    SliceContext,
    always_one_slice,
    process,
    slice_requests,
)
from chalicelib.ports import BlobStore, Clock, Queue, RunUpdate, StartItem, Store

log = logging.getLogger(__name__)
EARLY_WAIT_LIMIT = START_LEAD_S + 1.5
BUFFERING = ("buffer_one", "cancel_other")


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


@dataclass(frozen=True)
class PreparedStart:
    """A run claimed ahead of its second, ready to run at it."""

    run: Run
    token: str
    requests: list[dict[str, Any]]


@dataclass
class Refill:
    """What a refill did: slices re-sent, slices given up (lease lost too often), and
    whether it finalized the run."""

    resent: int = 0
    failed: int = 0
    finalized: int = 0


def start_item(run: Run, delay: int) -> StartItem:
    """A new run's start message; a one-slice run's carries the hint that lets the start
    worker claim it without reading it first."""
    hinted = (
        run.status == ExStatus.pending
        and not (run.buffered or run.presliced or run.config.get("assets"))
        and always_one_slice(run.operations)
    )
    if not hinted:
        return (run.job_id, run.slot, delay)
    hint = StartHint(run.ex_id, run.start_at, run.lease_seconds)
    return (run.job_id, run.slot, delay, hint.to_body())


def _token(claim_id: str | None) -> str:
    """A lease token; a delivery's own claims carry its id before the colon."""
    fresh = uuid.uuid4().hex
    return fresh if claim_id is None else f"{claim_id}:{fresh}"


def _claimed_by(run: Run, claim_id: str) -> bool:
    """The run is held, before its work began, by a claim of the delivery `claim_id`."""
    held = run.status == ExStatus.initializing or (run.status == ExStatus.running and run.inline)
    return held and run.lease_token is not None and run.lease_token.startswith(f"{claim_id}:")


class WorkerService:
    """What the start and slice queue handlers do with one message each."""

    def __init__(
        self,
        store: Store,
        queue: Queue,
        clock: Clock,
        sleep: Callable[[float], None] = time.sleep,
        ops: OpSource | None = None,
        files: BlobStore | None = None,
    ) -> None:
        self.store, self.queue, self.clock, self.sleep = store, queue, clock, sleep
        self.ops, self.files = ops, files

    def _asset_ops(self, run: Run) -> dict[str, OpSpec]:
        """The ops the run's assets provide (none without assets or an op source)."""
        assets = run.config.get("assets") or []
        return self.ops.ops_for(assets) if self.ops is not None and assets else {}

    def _pinned(self, run: Run) -> dict[str, Any]:
        """The claim's extra sets: the run's asset references as the ids they name now,
        kept on the run (its `assets`, as Teraslice's execution shows them)."""
        assets = run.config.get("assets") or []
        if self.ops is None or not assets:
            return {}
        ids = self.ops.pin(assets)
        return {} if ids == assets else {"config": {**run.config, "assets": ids}}

    # ---- start ----------------------------------------------------------------------------
    def handle_start(
        self,
        job_id: str,
        slot: str,
        claim_id: str | None = None,
        hint: StartHint | None = None,
    ) -> str:
        """Start a pending run: claim it, wait for its second, run it. A duplicate or stale
        message does nothing. Returns what happened, for logs and tests."""
        prepared = self.prepare_start(job_id, slot, claim_id, hint)
        if isinstance(prepared, str):
            return prepared
        return self.run_prepared(prepared)

    def prepare_start(
        self,
        job_id: str,
        slot: str,
        claim_id: str | None = None,
        hint: StartHint | None = None,
    ) -> PreparedStart | str:
        """Everything that can happen before the run's second: checks, slicing, the claim
        (with a lease that covers the wait) and, for a sliced run, writing its slices. A
        string says why there is nothing to run.

        `claim_id` names the delivery (the SQS message id, the same on redelivery): the
        claim's lease token starts with it, so a redelivery whose claim was applied but
        unanswered recognises the claim as its own and goes on at once.

        With a `hint` (a one-slice run's start message) the claim is tried first without
        reading the run; if its conditions do not hold, the run is read and judged as below."""
        if hint is not None:
            fast = self._claim_unread(job_id, slot, hint, claim_id)
            if fast is not None:
                return fast
        run = self.store.get_run(job_id, slot)
        if run is None or run.status in TERMINAL_EX:
            return "dropped"
        now = self.clock.now()
        if claim_id is not None and _claimed_by(run, claim_id):
            return self._resume_own_claim(run, claim_id, now)
        if run.status == ExStatus.stopping:
            return "stopped" if self.stop_if_idle(run, now) else "stopping"
        if run.buffered:
            limit = JobDefinition.model_validate(run.config).active_limit or 1
            if not self.store.acquire_buffered(run, limit):
                return "buffered"
            run = self.store.get_run(job_id, slot)
            if run is None or run.status != ExStatus.pending:
                return "dropped"
        early = run.start_at - now
        if early > EARLY_WAIT_LIMIT:
            self.queue.send_starts([(job_id, slot, min(900, int(early - START_LEAD_S)))])
            return "early"
        claimable = run.status == ExStatus.pending or (
            run.status in (ExStatus.initializing, ExStatus.running)
            and (run.lease_expires_at is None or run.lease_expires_at < now)
            and (run.status != ExStatus.running or run.inline)
        )
        if not claimable:
            return "busy"
        if run.presliced:
            return self._claim_presliced(run, now, claim_id)
        try:
            pinned = self._pinned(run)
            if pinned:
                run = replace(run, config=pinned["config"])
            requests = slice_requests(run.operations, run.args, self._asset_ops(run))
        except Exception as exc:  # a reader that cannot slice fails the run, once
            self._fail_unsliced(run, now, _error_text(exc))
            return "failed"
        begin = max(now, run.start_at)
        if len(requests) == 0:
            done = self.end(
                run,
                RunUpdate(
                    set={
                        "status": ExStatus.completed,
                        "started_at": begin,
                        "finished_at": begin,
                        "updated": now,
                    }
                ),
                statuses=[ExStatus.pending],
            )
            return "completed" if done else "busy"
        token = _token(claim_id)
        lease = begin + run.lease_seconds
        if len(requests) == 1:
            claim = self._inline_claim(run, token, begin, now)
            claimed = self.store.update_run(
                run,
                RunUpdate(set={**claim.set, **pinned}, add=claim.add),
                statuses=[ExStatus.pending, ExStatus.initializing, ExStatus.running],
                lease_expired_before=now,
            )
            if claimed is None:
                return "busy"
            return PreparedStart(claimed, token, requests)
        claimed = self._claim_initializing(run, token, lease, now, pinned)
        if claimed is None:
            return "busy"
        self._put_slices(run, requests, now)
        return PreparedStart(claimed, token, requests)

    def _inline_claim(self, run: Run, token: str, begin: float, now: float) -> RunUpdate:
        """The claim of a one-slice run: running, inline, its lease covering the wait."""
        lease = begin + run.lease_seconds
        return RunUpdate(
            set={
                "status": ExStatus.running,
                "inline": True,
                "slices_total": 1,
                "remaining": 1,
                "queued_cursor": 1,
                "lease_token": token,
                "lease_expires_at": lease,
                "check_at": lease + 1,
                "started_at": run.started_at or begin,
                "updated": now,
            },
            add={"attempts": 1},
        )

    def _claim_unread(
        self, job_id: str, slot: str, hint: StartHint, claim_id: str | None
    ) -> PreparedStart | None:
        """Claim a pending one-slice run from its start hint alone (one write, no read);
        None when the claim's conditions fail or the run is not due soon: the caller reads it."""
        now = self.clock.now()
        if hint.start_at - now > EARLY_WAIT_LIMIT:
            return None
        known = Run(
            job_id,
            slot,
            hint.ex_id,
            scheduled_start=hint.start_at,
            config={"lease_seconds": hint.lease_seconds},
        )
        token = _token(claim_id)
        claimed = self.store.update_run(
            known,
            self._inline_claim(known, token, max(now, hint.start_at), now),
            statuses=[ExStatus.pending],
            lease_expired_before=now,
            unread=True,
        )
        if claimed is None:
            return None
        requests = slice_requests(claimed.operations, claimed.args, self._asset_ops(claimed))
        return PreparedStart(claimed, token, requests)

    def _put_slices(self, run: Run, requests: list[dict[str, Any]], now: float) -> None:
        self.store.put_slices(
            [
                Slice(run.ex_id, slice_id_for(i), i, request, created=now, updated=now)
                for i, request in enumerate(requests)
            ]
        )

    def _resume_own_claim(self, run: Run, claim_id: str, now: float) -> PreparedStart | str:
        """This delivery's claim was applied but its answer lost: take the lease over under
        a fresh token (so an earlier holder, were it still alive, loses it) and go on from
        where the claim left off; slices already written are kept."""
        token = _token(claim_id)
        taken = self.store.update_run(
            run,
            RunUpdate(set={"lease_token": token, "updated": now}),
            statuses=[run.status],
            lease_token=run.lease_token,
        )
        if taken is None:
            return "busy"
        if taken.presliced:
            return PreparedStart(taken, token, [])
        requests = slice_requests(taken.operations, taken.args)  # it sliced at the claim
        if taken.status == ExStatus.initializing:
            self._put_slices(taken, requests, now)
        return PreparedStart(taken, token, requests)

    def run_prepared(self, p: PreparedStart) -> str:
        """At the run's second (waiting for it if need be): run a one-slice run to its end,
        or set a sliced run going with its first `workers` slices."""
        wait = p.run.start_at - self.clock.now()
        if wait > 0:
            self.sleep(wait)
        begin = self.clock.now()
        if p.run.presliced:
            return self._set_going(p.run, p.token, p.run.slices_total, begin)
        if len(p.requests) == 1:
            return self._run_inline(p.run, p.token, p.requests[0], begin)
        return self._set_going(p.run, p.token, len(p.requests), begin)

    def _claim_initializing(
        self, run: Run, token: str, lease: float, now: float, extra: dict[str, Any] | None = None
    ) -> Run | None:
        """pending (or initializing with an expired lease) -> initializing, held by `token`."""
        return self.store.update_run(
            run,
            RunUpdate(
                set={
                    "status": ExStatus.initializing,
                    "lease_token": token,
                    "lease_expires_at": lease,
                    "check_at": lease + 1,
                    "updated": now,
                    **(extra or {}),
                }
            ),
            statuses=[ExStatus.pending, ExStatus.initializing],
            lease_expired_before=now,
        )

    def _claim_presliced(
        self, run: Run, now: float, claim_id: str | None = None
    ) -> PreparedStart | str:
        """A recovery: its slices were written when it was created; claim it to set going."""
        token = _token(claim_id)
        lease = max(now, run.start_at) + run.lease_seconds
        try:
            pinned = self._pinned(run)
        except Exception as exc:
            self._fail_unsliced(run, now, _error_text(exc))
            return "failed"
        claimed = self._claim_initializing(run, token, lease, now, pinned)
        return "busy" if claimed is None else PreparedStart(claimed, token, [])

    def _run_inline(self, claimed: Run, token: str, request: dict[str, Any], begin: float) -> str:
        """A one-slice run: the run record is its own slice (claimed, processed, finished)."""
        ctx = SliceContext(
            claimed.ex_id, claimed.job_id, 0, claimed.attempts, claimed.args, self.files
        )
        try:
            result = process(claimed.operations, request, ctx, self._asset_ops(claimed))
        except Exception as exc:
            return self._inline_failed(claimed, token, _error_text(exc))
        end = self.clock.now()
        started = begin if claimed.attempts == 1 else claimed.started_at or begin
        done = self.end(
            claimed,
            RunUpdate(
                set={
                    "status": ExStatus.completed,
                    "processed": 1,
                    "remaining": 0,
                    "result": result,
                    "started_at": started,
                    "finished_at": end,
                    "updated": end,
                }
            ),
            statuses=[ExStatus.running, ExStatus.paused],
            lease_token=token,
        )
        if done:
            return "completed"
        return "stopped" if self._stop_held(claimed, token, end) else "lost-lease"

    def _fail_unsliced(self, run: Run, now: float, error: str) -> None:
        self.fail(run, error, now, statuses=[ExStatus.pending, ExStatus.initializing])

    def fail(
        self,
        run: Run,
        error: str,
        now: float,
        *,
        statuses: list[ExStatus],
        check_at: float | None = None,
    ) -> Run | None:
        """End the run as failed, noting why (a reader that cannot slice, a timeout)."""
        return self.end(
            run,
            RunUpdate(
                set={
                    "status": ExStatus.failed,
                    "has_errors": True,
                    "finished_at": now,
                    "updated": now,
                    "errors": [*run.errors, {"slice_id": None, "error": error}],
                }
            ),
            statuses=statuses,
            check_at=check_at,
        )

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
                statuses=[ExStatus.running, ExStatus.paused],
                lease_token=token,
            )
            if kept:
                self.queue.send_starts([(run.job_id, run.slot, delay)])
            return "retry"
        self.end(
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
            statuses=[ExStatus.running, ExStatus.paused],
            lease_token=token,
        )
        return "failed"

    def _set_going(self, claimed: Run, token: str, total: int, begin: float) -> str:
        """initializing -> running at the run's second, with its first slices handed out."""
        first = min(max(1, claimed.workers), total)
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
                    "check_at": begin + claimed.lease_seconds,
                    "started_at": claimed.started_at or begin,
                    "updated": begin,
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
        ctx = SliceContext(ex_id, job_id, sl.order, sl.attempts, run.args, self.files)
        try:
            result = process(run.operations, sl.request, ctx, self._asset_ops(run))
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
        done = self.end(
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

    def refill(self, run: Run, now: float, resend_handed_out: bool = True) -> Refill:
        """Put a sliced run's work back in flight: re-send slices handed out but not running
        (a lost or dropped message, an expired lease), give up on slices that lost their
        lease more than max_retries times, hand out more up to `workers`, and finalize the
        run if nothing remains. Safe to repeat: every step is a conditional write.
        `resend_handed_out=False` trusts that handed-out slices' messages are still queued
        (a change of workers), and only hands out more."""
        out = Refill()
        resend: list[int] = []
        in_flight = 0
        for sl in self.store.list_slices(run.ex_id):
            live = sl.lease_expires_at is not None and sl.lease_expires_at >= now
            if sl.state == SliceState.started and live:
                in_flight += 1
            elif sl.state == SliceState.started and sl.attempts > run.max_retries:
                error = f"lease expired {sl.attempts} times (worker lost)"
                if self.store.finish_slice(
                    sl,
                    run,
                    token=None,
                    expected_lease=sl.lease_expires_at,
                    completed=False,
                    result=None,
                    error=error,
                    now=now,
                ):
                    out.failed += 1
            elif sl.state == SliceState.started or (
                sl.state == SliceState.pending
                and sl.order < run.queued_cursor
                and (sl.not_before is None or sl.not_before <= now)
                and resend_handed_out
            ):  # its lease expired: its message is gone
                resend.append(sl.order)
            elif sl.state == SliceState.pending and sl.order < run.queued_cursor:
                in_flight += 1  # a retry waiting out its backoff
        current = self.store.get_run(run.job_id, run.slot)
        if current is None or current.status != ExStatus.running:
            return out
        if resend:
            self._send_slices(current, resend)
            out.resent += len(resend)
        if current.remaining == 0:
            out.finalized += int(self.finalize(current, now))
            return out
        for _ in range(max(0, current.workers - in_flight - len(resend))):
            nxt = self.store.update_run(
                current,
                RunUpdate(set={"updated": now}, add={"queued_cursor": 1}),
                statuses=[ExStatus.running],
                cursor_below_total=True,
            )
            if nxt is None:
                break
            current = nxt
            self._send_slices(current, [current.queued_cursor - 1])
            out.resent += 1
        return out

    # ---- ends -----------------------------------------------------------------------------
    def end(
        self,
        run: Run,
        update: RunUpdate,
        *,
        statuses: list[ExStatus],
        lease_token: str | None = None,
        lease_expired_before: float | None = None,
        check_at: float | None = None,
        remaining_zero: bool = False,
    ) -> Run | None:
        """Every terminal write goes through here: the store frees the run's active slot
        with it, and a buffered run of the same job, if any, is nudged to take the slot."""
        ended = self.store.update_run(
            run,
            update,
            statuses=statuses,
            lease_token=lease_token,
            lease_expired_before=lease_expired_before,
            check_at=check_at,
            remaining_zero=remaining_zero,
        )
        if ended is not None and run.holds_slot and run.config.get("overlap") in BUFFERING:
            self.nudge_buffered(run.job_id)
        return ended

    def nudge_buffered(self, job_id: str) -> None:
        job = self.store.get_job(job_id)
        if job is not None and job.buffered_slot is not None:
            self.queue.send_starts([(job_id, job.buffered_slot, 0)])

    def stop_runs(self, job_id: str, slots: Iterable[str], now: float, reason: str) -> int:
        """Ask these runs to stop: a pending one stops at once; a started one moves to
        stopping and ends when no slice of it is in flight. Returns how many were asked."""
        asked = 0
        for slot in slots:
            run = self.store.get_run(job_id, slot)
            if run is None or run.status in TERMINAL_EX or run.status == ExStatus.stopping:
                continue
            note = [*run.errors, {"slice_id": None, "error": f"stopped: {reason}"}]
            if run.status == ExStatus.pending and self.end(
                run,
                RunUpdate(
                    set={
                        "status": ExStatus.stopped,
                        "finished_at": now,
                        "updated": now,
                        "errors": note,
                    }
                ),
                statuses=[ExStatus.pending],
            ):
                asked += 1
                continue
            if self.store.update_run(
                run,
                RunUpdate(
                    set={
                        "status": ExStatus.stopping,
                        "check_at": now,
                        "updated": now,
                        "errors": note,
                    }
                ),
                statuses=[
                    ExStatus.pending,
                    ExStatus.initializing,
                    ExStatus.running,
                    ExStatus.paused,
                ],
            ):
                asked += 1
        return asked

    def stop_if_idle(self, run: Run, now: float) -> bool:
        """stopping -> stopped once nothing of the run is in flight (no live lease)."""
        if run.inline or run.slices_total == 0:
            if run.lease_expires_at is not None and run.lease_expires_at >= now:
                return False
        else:
            for sl in self.store.list_slices(run.ex_id):
                live = sl.lease_expires_at is not None and sl.lease_expires_at >= now
                if sl.state == SliceState.started and live:
                    return False
        stopped = self.end(
            run,
            RunUpdate(set={"status": ExStatus.stopped, "finished_at": now, "updated": now}),
            statuses=[ExStatus.stopping],
        )
        return stopped is not None

    def _stop_held(self, run: Run, token: str, now: float) -> bool:
        """An inline run asked to stop while its slice ran: the worker holding it stops it."""
        current = self.store.get_run(run.job_id, run.slot)
        if current is None or current.status != ExStatus.stopping:
            return False
        stopped = self.end(
            current,
            RunUpdate(set={"status": ExStatus.stopped, "finished_at": now, "updated": now}),
            statuses=[ExStatus.stopping],
            lease_token=token,
        )
        return stopped is not None
