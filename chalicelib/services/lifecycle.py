"""A run's lifecycle: the one place that applies the run aggregate's transitions, and the
stops, which are transitions plus a look at what is still in flight."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from chalicelib.domain.jobs import active_limit_of
from chalicelib.domain.runs import Run, RunTransition
from chalicelib.domain.slices import slice_id_for
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus, SliceState
from chalicelib.ops.registry import agent_command, error_text, waits
from chalicelib.ops.waiting import stop_waited
from chalicelib.ports import Alert, Clock, Queue, SliceMessage, StartMessage, Store
from chalicelib.services.notifications import NotificationService

BUFFERING = ("buffer_one", "cancel_other")


def stop_what_waits(record: dict[str, Any], cause: str) -> tuple[bool, str]:
    """Stop the execution or task a waiting slice waits for: whether it was, and what
    happened in words."""
    what = "the execution" if record.get("kind") == "stepfunctions" else "the task"
    try:
        stop_waited(record, cause)
    except Exception as exc:
        return False, f"could not stop {what}: {error_text(exc)}"
    return True, f"stopped {what}"


def may_have_waiters(run: Run) -> bool:
    """Whether a run of this job may wait for the slot `run` frees: its job buffers, or
    runs missed slots one after another (default jobs do neither: no read to look)."""
    return (
        run.config.get("overlap") in BUFFERING
        or run.config.get("catchup") == "all"
        or run.catchup
        or run.ahead_of_catchup
    )


class RunLifecycle:
    """Applies transitions of runs (`Run.claim_inline`, `Run.finalize`, `Run.stop` ...)
    through the store, with what must follow them: a run that ends while holding its job's
    active slot frees it in the same write, and the job's buffered run, if any, is nudged
    to take it."""

    def __init__(self, store: Store, queue: Queue, clock: Clock) -> None:
        self.store, self.queue, self.clock = store, queue, clock
        # where a command run's slices go instead of the slice queue: remote agents' tasks
        # (set by the composition root; without it they go to the queue, and fail there)
        self.agent_tasks: Callable[[Run, Sequence[int]], None] | None = None
        # set by the composition root: without, no event is recorded
        self.notifications: NotificationService | None = None

    def apply(self, run: Run, transition: RunTransition) -> Run | None:
        """Persist `transition` of `run` (one conditional write); the run as written, or
        None if its guard did not hold. A write that ends the run, or starts it late, also
        records its event for the job's `notify` (one more conditional write, only if the
        job asks; delivered later, from the outbox)."""
        done = self.store.apply_run(run, transition)
        if done is not None and transition.terminal and done.remaining > 0:
            self.stop_waits(done)
        if done is not None and self.notifications is not None:
            self.notifications.run_ended(run, done, self.clock.now())
        if done is None or not (transition.terminal and run.holds_slot):
            return done
        if may_have_waiters(run):
            self.nudge_buffered(run.job_id)
        return done

    def seen_ended(self, run: Run) -> None:
        """A message found `run` ended: its event is recorded if it is not yet (the worker
        that ended it may have died between the two writes)."""
        if self.notifications is not None:
            self.notifications.ended(run, self.clock.now())

    def nudge_buffered(self, job_id: str) -> None:
        """If the job has a free slot, send a start to the run next in line for it: its
        buffered run, else its earliest waiting catch-up run."""
        job = self.store.get_job(job_id)
        if job is None:
            return
        limit = active_limit_of(job.definition)
        if limit is not None and len(job.active_slots) >= limit:
            return
        nxt = job.buffered_slot or min(job.waiting_slots, default=None)
        if nxt is not None:
            self.queue.send_starts([StartMessage(job_id, nxt)])

    def stop_waits(self, run: Run) -> int:
        """A run that ended (stopped, timed out) before its waiting slices did: stop what
        they wait for (StopExecution / StopTask); what could not be stopped is an alert
        that says why. Only jobs whose last op waits have any. How many were stopped."""
        if run.inline or not waits(run.operations):
            return 0
        stopped = 0
        for sl in self.store.list_slices(run.ex_id):
            if sl.wait is None or sl.state not in (SliceState.pending, SliceState.started):
                continue
            ok, note = stop_what_waits(sl.wait, f"cadenza: the run ended ({run.status})")
            stopped += ok
            if not ok:
                self.store.put_alert(
                    Alert(
                        alert_id=uuid.uuid4().hex,
                        created=self.clock.now(),
                        reason="a waiting target was not stopped",
                        job_id=run.job_id,
                        ex_id=run.ex_id,
                        slot=run.slot,
                        detail={"slice": sl.slice_id, "kind": sl.wait.get("kind"), "why": note},
                    )
                )
        return stopped

    def send_slices(self, run: Run, orders: Sequence[int], delay: int = 0) -> None:
        """Slice messages for these slices (by order) of the run; a command run's slices
        are offered to remote agents instead (a retry's delay does not apply to them)."""
        if self.agent_tasks is not None and agent_command(run.operations) is not None:
            self.agent_tasks(run, orders)
            return
        self.queue.send_slices(
            [SliceMessage(run.job_id, run.slot, run.ex_id, slice_id_for(i), delay) for i in orders]
        )

    # ---- stops ----------------------------------------------------------------------------
    def stop_runs(self, job_id: str, slots: Iterable[str], now: float, reason: str) -> int:
        """Ask these runs to stop: a pending one stops at once; a started one moves to
        stopping and ends when no slice of it is in flight. Returns how many were asked."""
        asked = 0
        for slot in slots:
            run = self.store.get_run(job_id, slot)
            if run is None or run.status in TERMINAL_EX or run.status == ExStatus.stopping:
                continue
            stopped = run.status == ExStatus.pending and self.apply(
                run, run.stop_pending(now, reason)
            )  # else (or if it started meanwhile) it is asked to stop
            if stopped or self.apply(run, run.ask_stop(now, reason)):
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
        return self.apply(run, run.stop(now)) is not None

    def stop_held(self, run: Run, token: str, now: float) -> bool:
        """An inline run asked to stop while its slice ran: the worker holding it stops it."""
        current = self.store.get_run(run.job_id, run.slot)
        if current is None or current.status != ExStatus.stopping:
            return False
        return self.apply(current, current.stop(now, token)) is not None
