"""The slice path: a slice message claims its slice, runs the processors, records the
outcome once, and hands out the next slice; the last one finalizes the run. The sweep's
refill puts a sliced run's work back in flight."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from chalicelib.domain.agents import Task
from chalicelib.domain.outcomes import SliceOutcome
from chalicelib.domain.runs import Run
from chalicelib.domain.slices import MAX_SQS_DELAY, Slice, Waiting, retry_delay
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus, SliceState
from chalicelib.ops.registry import (
    OpSource,
    Secrets,
    SliceContext,
    asset_ops,
    check_wait,
    error_text,
    process,
)
from chalicelib.ops.waiting import is_final
from chalicelib.ports import BlobStore
from chalicelib.services.lifecycle import RunLifecycle, stop_what_waits
from chalicelib.services.runlogs import RunLogging

CHECK_SLACK_S = 1.0  # a check message may come this much before its time (clocks differ)


@dataclass
class Refill:
    """What a refill did: slices re-sent, slices given up (lease lost too often), and
    whether it finalized the run."""

    resent: int = 0
    failed: int = 0
    finalized: int = 0


@dataclass
class _Triage:
    """A sliced run's slices as a refill sees them."""

    resend: list[int] = field(default_factory=list)  # handed out, their message gone
    lost: list[Slice] = field(default_factory=list)  # lost their lease too often
    in_flight: int = 0  # running, or waiting out a retry's backoff


class SlicePath(RunLifecycle, RunLogging):
    """What the slice queue's handler does with one message."""

    ops: OpSource | None
    files: BlobStore | None
    secrets: Secrets | None

    def handle_slice(self, job_id: str, slot: str, ex_id: str, slice_id: str) -> SliceOutcome:
        """Claim one slice, run the processors, record the outcome exactly once."""
        run = self.store.get_run(job_id, slot)
        if run is None or run.ex_id != ex_id or run.status != ExStatus.running:
            if run is not None and run.ex_id == ex_id and run.status in TERMINAL_EX:
                self.seen_ended(run)
            return SliceOutcome.dropped
        now = self.clock.now()
        token = uuid.uuid4().hex
        sl = self.store.claim_slice(ex_id, slice_id, token, now, now + run.lease_seconds)
        if sl is None:
            return SliceOutcome.duplicate
        if sl.wait is not None and now < float(sl.wait.get("check_at", 0)) - CHECK_SLACK_S:
            return self._not_yet(sl, token, now)
        ctx = SliceContext(
            ex_id, job_id, sl.order, sl.attempts, run.args, self.files, slot=run.slot, wait=sl.wait
        )

        def work() -> Any:
            if sl.wait is not None:
                return check_wait(run.operations, ctx)
            return process(
                run.operations, sl.request, ctx, asset_ops(self.ops, run.assets), self.secrets
            )

        result, failure = self.logged(ex_id, sl.slice_id, sl.attempts, work)
        if failure is not None:
            final = is_final(failure, sl.wait)
            return self._slice_failed(run, sl, token, error_text(failure), final)
        if isinstance(result, Waiting):
            return self._wait_for(run, sl, token, result)
        end = self.clock.now()
        if not self.store.finish_slice(sl, run, sl.complete(token, end, result)):
            return SliceOutcome.lost_lease
        self.after_slice(run, end)
        return SliceOutcome.completed

    def _wait_for(self, run: Run, sl: Slice, token: str, waiting: Waiting) -> SliceOutcome:
        """The slice's op started something and waits for its end: the slice records what,
        and a delayed message (or the sweep, if it is lost) checks it later. No worker waits.
        Waiting longer than the job's timeout_seconds stops it and fails the slice."""
        now = self.clock.now()
        since = float((sl.wait or {}).get("since", now))
        if now - since > run.timeout_seconds:
            error = f"timed out: waited {now - since:.0f} s (timeout_seconds {run.timeout_seconds})"
            error += "; " + stop_what_waits(waiting.record, "cadenza: timeout_seconds passed")[1]
            if not self.store.finish_slice(sl, run, sl.fail(token, now, error)):
                return SliceOutcome.lost_lease
            self.after_slice(run, now)
            return SliceOutcome.failed
        delay = min(MAX_SQS_DELAY, waiting.check_seconds)
        record = {**waiting.record, "since": since, "check_at": now + delay}
        if not self.store.wait_slice(sl, token, now + delay, record, now):
            return SliceOutcome.lost_lease
        self.send_slices(run, [sl.position], delay)
        return SliceOutcome.waiting

    def _not_yet(self, sl: Slice, token: str, now: float) -> SliceOutcome:
        """A check message before its time: a duplicate (SQS delivers at least once, the
        sweep may re-send one as the delayed one comes). The slice is given back as it was,
        and no message sent, so a waiting slice keeps one chain of checks."""
        assert sl.wait is not None
        self.store.wait_slice(sl, token, float(sl.wait["check_at"]), sl.wait, now)
        return SliceOutcome.duplicate

    def agent_slice_ended(self, task: Task) -> bool:
        """A remote agent's task ended for good: its slice's outcome recorded once (claimed
        and finished under a token of its own), then the next slice handed out, or the run
        finalized. False if the run or the slice had moved on."""
        run = self.store.get_run(task.job_id, task.slot)
        live = (ExStatus.running, ExStatus.stopping)
        if run is None or run.ex_id != task.ex_id or run.status not in live:
            return False
        now = self.clock.now()
        token = uuid.uuid4().hex
        sl = self.store.claim_slice(task.ex_id, task.slice_id, token, now, now + run.lease_seconds)
        if sl is None:
            return False
        ok = task.error is None and task.exit_code == 0
        error = task.error or f"exit code {task.exit_code}"
        ending = sl.complete(token, now, task.result) if ok else sl.fail(token, now, error)
        if not self.store.finish_slice(sl, run, ending):
            return False
        if run.status == ExStatus.running:
            self.after_slice(run, now)
        return True

    def _slice_failed(
        self, run: Run, sl: Slice, token: str, error: str, final: bool = False
    ) -> SliceOutcome:
        """A slice's attempt failed: released to be retried after a backoff, or, after its
        last attempt (or a `final` failure), recorded in error."""
        end = self.clock.now()
        if sl.attempts <= run.max_retries and not final:
            delay = retry_delay(sl.attempts)
            if self.store.release_slice(sl, token, end + delay, error, end):
                self.send_slices(run, [sl.position], delay)
            return SliceOutcome.retry
        if not self.store.finish_slice(sl, run, sl.fail(token, end, error)):
            return SliceOutcome.lost_lease
        self.after_slice(run, end)
        return SliceOutcome.failed

    def after_slice(self, run: Run, now: float) -> None:
        """Hand out the next slice, or, when none remain, let exactly one writer finalize."""
        if self._hand_out(run, now, 1):
            return
        current = self.store.get_run(run.job_id, run.slot)
        if current is not None and current.status == ExStatus.running and current.remaining == 0:
            self.finalize(current, now)

    def _hand_out(self, run: Run, now: float, wanted: int) -> int:
        """Hand out up to `wanted` more slices (each a conditional cursor step); how many."""
        sent = 0
        for _ in range(max(0, wanted)):
            nxt = self.apply(run, run.hand_out_next(now))
            if nxt is None:
                break
            run = nxt
            self.send_slices(run, [run.queued_cursor - 1])
            sent += 1
        return sent

    def finalize(self, run: Run, now: float) -> bool:
        """running -> completed / failed, only when no slice remains; one caller wins."""
        return self.apply(run, run.finalize(now)) is not None

    def refill(self, run: Run, now: float, resend_handed_out: bool = True) -> Refill:
        """Put a sliced run's work back in flight: re-send slices handed out but not running
        (a lost or dropped message, an expired lease), give up on slices that lost their
        lease more than max_retries times, hand out more up to `workers`, and finalize the
        run if nothing remains. Safe to repeat: every step is a conditional write.
        `resend_handed_out=False` trusts that handed-out slices' messages are still queued
        (a change of workers), and only hands out more."""
        out = Refill()
        seen = self._triage(run, now, resend_handed_out)
        for sl in seen.lost:
            error = f"lease expired {sl.attempts} times (worker lost)"
            if self.store.finish_slice(sl, run, sl.abandon(now, error)):
                out.failed += 1
        current = self.store.get_run(run.job_id, run.slot)
        if current is None or current.status != ExStatus.running:
            return out
        if seen.resend:
            self.send_slices(current, seen.resend)
            out.resent += len(seen.resend)
        if current.remaining == 0:
            out.finalized += int(self.finalize(current, now))
            return out
        wanted = current.workers - seen.in_flight - len(seen.resend)
        out.resent += self._hand_out(current, now, wanted)
        return out

    def _triage(self, run: Run, now: float, resend_handed_out: bool) -> _Triage:
        seen = _Triage()
        for sl in self.store.list_slices(run.ex_id):
            handed_out = sl.position < run.queued_cursor
            if sl.state == SliceState.started:
                if sl.lease_expires_at is not None and sl.lease_expires_at >= now:
                    seen.in_flight += 1
                elif sl.attempts > run.max_retries:
                    seen.lost.append(sl)
                else:  # its lease expired: its message is gone
                    seen.resend.append(sl.position)
            elif sl.state == SliceState.pending and handed_out:
                due = sl.not_before is None or sl.not_before <= now
                if due and resend_handed_out:
                    seen.resend.append(sl.position)
                else:
                    seen.in_flight += 1  # a retry waiting out its backoff
        return seen
