"""The start path: a start message claims its run ahead of the run's second (slicing it,
writing its slices), then, at that second, runs a one-slice run on its own record or sets
a sliced run going with its first slices. A run that must take one of its job's active
slots is read and sliced ahead, and claimed with the slot at its second (`entry`)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, Protocol

from chalicelib.domain.jobs import active_limit_of
from chalicelib.domain.outcomes import StartOutcome
from chalicelib.domain.runs import (
    GROUP_RUNS,
    HANDOFF_LEAD_S,
    MAX_WAIT_S,
    START_LEAD_S,
    Delivery,
    Run,
    RunTransition,
    StartHint,
    start_delay,
    usable_lead,
)
from chalicelib.domain.slices import MAX_SQS_DELAY, retry_delay, slice_id_for
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus
from chalicelib.ops.registry import (
    OpSource,
    OpSpec,
    Secrets,
    SliceContext,
    agent_command,
    always_one_slice,
    asset_ops,
    error_text,
    process,
    runs_inline,
    slice_requests,
    waits,
)
from chalicelib.ops.waiting import is_final
from chalicelib.ports import BlobStore, StartGroup, StartMessage
from chalicelib.services.entry import PreparedStart, SlotEntry, may_enter_ahead
from chalicelib.services.runlogs import RunLogging

log = logging.getLogger(__name__)
EARLY_SLACK_S = 1.5  # a start message may come this much before its lead (whole-second delays)
HINT_MAX_BYTES = 16_384  # a start message stays small (SQS takes 256 KB); larger: read


class StartGate(Protocol):
    """The runs a process starts on one second: each tells when it has begun; a run's
    finish waits (a bounded while) until all have."""

    def begun(self) -> None: ...

    def wait(self) -> None: ...


class _NoGate:
    def begun(self) -> None:
        pass

    def wait(self) -> None:
        pass


_NO_GATE = _NoGate()


def wait_limit(lead: float) -> float:
    """How long before its second a start message with this lead may claim its run."""
    return usable_lead(lead) + EARLY_SLACK_S


def start_message(
    run: Run, delay: int, lead: float = START_LEAD_S, sent_at: float | None = None
) -> StartMessage:
    """A new run's start message; a one-slice run's carries the hint that lets the start
    worker claim it without reading it first. `lead`: how early before its second it may
    be claimed (a burst's runs are claimed ahead, so their second finds them ready);
    `sent_at`: now, from the tick that created the run."""
    hinted = (
        run.status == ExStatus.pending
        and not (run.buffered or run.presliced or run.assets)
        and always_one_slice(run.operations)
        and not waits(run.operations)
        and agent_command(run.operations) is None
    )
    hint = None
    if hinted and not _enters_at_its_second(run):
        hint = StartHint(run.ex_id, run.start_at, run.lease_seconds)
    elif hinted and _hint_carries(run):
        hint = StartHint(run.ex_id, run.start_at, run.lease_seconds, run.config, run.args)
    return StartMessage(run.job_id, run.slot, delay, hint, lead, sent_at)


def _hint_carries(run: Run) -> bool:
    """A run that takes its job's slot with its claim is hinted with its config and args,
    if it may be claimed ahead and they are small: not a catch-up run, nor one its job's
    catch-up runs wait for (the hint's run carries no flag, so its end would not nudge)."""
    if run.catchup or run.ahead_of_catchup:
        return False
    size = len(json.dumps(run.config, separators=(",", ":"))) + len(run.args or "")
    return size <= HINT_MAX_BYTES


def _enters_at_its_second(run: Run) -> bool:
    """A run that holds none of its job's active slots, of a job that limits them: it
    takes one when its second comes, with its claim."""
    return not run.holds_slot and active_limit_of(run.config) is not None


def _token(claim_id: str | None) -> str:
    """A lease token; a delivery's own claims carry its id before the colon."""
    fresh = uuid.uuid4().hex
    return fresh if claim_id is None else f"{claim_id}:{fresh}"


def _claimed(run: Run) -> bool:
    """The run is held by a start claim: a sliced run initializing, or a one-slice run
    running on its own record."""
    return run.status == ExStatus.initializing or (run.status == ExStatus.running and run.inline)


def _claimed_by(run: Run, claim_id: str) -> bool:
    """The run is held, before its work began, by a claim of the delivery `claim_id`."""
    token = run.lease_token
    return _claimed(run) and token is not None and token.startswith(f"{claim_id}:")


def _claimable(run: Run, now: float) -> bool:
    """Pending, or held by a claim whose lease expired before its work began."""
    if run.status == ExStatus.pending:
        return True
    expired = run.lease_expires_at is None or run.lease_expires_at < now
    return expired and _claimed(run)


class StartPath(SlotEntry, RunLogging):
    """What the start queue's handler does with one message."""

    ops: OpSource | None
    files: BlobStore | None
    secrets: Secrets | None
    sleep: Callable[[float], None]

    def handle_start(
        self,
        job_id: str,
        slot: str,
        claim_id: str | None = None,
        hint: StartHint | None = None,
        delivery: Delivery | None = None,
    ) -> StartOutcome:
        """Start a pending run: claim it, wait for its second, run it. A duplicate or stale
        message does nothing."""
        prepared = self.prepare_start(job_id, slot, claim_id, hint, delivery)
        if isinstance(prepared, PreparedStart):
            return self.run_prepared(prepared)
        return prepared

    def prepare_start(
        self,
        job_id: str,
        slot: str,
        claim_id: str | None = None,
        hint: StartHint | None = None,
        delivery: Delivery | None = None,
    ) -> PreparedStart | StartOutcome:
        """Everything that can happen before the run's second: checks, slicing, the claim
        (with a lease that covers the wait) and, for a sliced run, writing its slices. An
        outcome says why there is nothing to run.

        `claim_id` names the delivery (the SQS message id, the same on redelivery): the
        claim's lease token starts with it, so a redelivery whose claim was applied but
        unanswered recognises the claim as its own and goes on at once.

        With a `hint` (a one-slice run's start message) the claim is tried first without
        reading the run; if its conditions do not hold, the run is read and judged as below.
        `delivery`: how long before its second the message may claim it (`wait_limit`),
        and when the tick sent it (how late its start is judged, `Delivery.since`)."""
        delivery = delivery or Delivery()
        if delivery.lead > MAX_WAIT_S:  # only a group's claims together are handed off
            delivery = replace(delivery, lead=MAX_WAIT_S)
        limit = wait_limit(delivery.lead)
        if hint is not None:
            fast = self._claim_unread(job_id, slot, hint, claim_id, limit)
            if fast is not None:
                return fast
        run = self.store.get_run(job_id, slot)
        if run is None or run.status in TERMINAL_EX:
            if run is not None:
                self.seen_ended(run)
            return StartOutcome.dropped
        now = self.clock.now()
        if claim_id is not None and _claimed_by(run, claim_id):
            return self._resume_own_claim(run, claim_id, now)
        ready = self._due(run, now, delivery.lead)
        if not isinstance(ready, Run):
            return ready
        if _enters_at_its_second(ready):
            return self._prepare_entry(ready, now, claim_id, delivery)
        if ready.presliced:
            return self._claim_presliced(ready, now, claim_id)
        return self._slice_and_claim(ready, now, claim_id)

    def prepare_group(
        self, starts: Sequence[StartMessage], claim_id: str | None = None
    ) -> list[PreparedStart | StartOutcome | Exception]:
        """A burst's group of start messages (`StartGroup`): the runs whose hints let them
        be claimed with their job's slot ahead of their second are claimed together, in
        one transaction; the others (all of them if that transaction fails: a redelivery,
        a race) as `prepare_start` would, one by one. What each message came to, in order
        (an exception where its handling raised: its message is redelivered)."""
        ahead: dict[int, tuple[PreparedStart, RunTransition]] = {}
        for i, msg in enumerate(starts):
            claim = self._ahead(msg, claim_id)
            if claim is not None:
                ahead[i] = claim
        claimed: dict[int, PreparedStart] = {}
        if len(ahead) > 1:
            written = self.store.claim_runs_together([(p.run, t) for p, t in ahead.values()])
            if written is None:
                log.warning("%d runs of a group not claimed together; one by one", len(ahead))
            now = self.clock.now()
            for (i, (p, _)), run in zip(ahead.items(), written or [], strict=False):
                if self.notifications is not None:
                    self.notifications.run_ended(p.run, run, now)
                claimed[i] = PreparedStart(run, p.token, p.requests)
        out: list[PreparedStart | StartOutcome | Exception] = []
        for i, msg in enumerate(starts):
            if i in claimed:
                out.append(claimed[i])
                continue
            try:
                out.append(
                    self.prepare_start(msg.job_id, msg.slot, claim_id, msg.hint, msg.delivery)
                )
            except Exception as exc:  # its message is redelivered; the others go on
                log.exception("start of %s %s failed before its run", msg.job_id, msg.slot)
                out.append(exc)
        return out

    def hand_off(self, prepared: Sequence[PreparedStart]) -> list[PreparedStart]:
        """A burst's runs claimed further ahead of their second than a start function may
        wait (MAX_WAIT_S: the wait and an op fit the function) are handed over, each with
        its claim's lease token, to start messages that arrive HANDOFF_LEAD_S before that
        second (`resume_claimed`), so no function is held, and billed, while it waits (the
        resuming one may be a cold start at the burst's scale-out, then reads its group
        and starts a thread a run: more than a lone start's 2 s).
        Returns the runs this function keeps: the others, or all of them if the messages
        could not be sent."""
        now = self.clock.now()
        far = [
            p
            for p in prepared
            if p.enter is None and _claimed(p.run) and p.run.start_at - now > MAX_WAIT_S
        ]
        if not far:
            return list(prepared)
        by_delay: dict[int, list[StartMessage]] = {}
        for p in sorted(far, key=lambda p: p.run.start_at):
            delay = start_delay(p.run.start_at, now, HANDOFF_LEAD_S)
            msg = StartMessage(p.run.job_id, p.run.slot, delay, claim_token=p.token)
            by_delay.setdefault(delay, []).append(msg)
        groups = [
            StartGroup(tuple(msgs[i : i + GROUP_RUNS]), delay)
            for delay, msgs in by_delay.items()
            for i in range(0, len(msgs), GROUP_RUNS)
        ]
        try:
            self.queue.send_starts(groups)
        except Exception:  # held here instead: late, never lost
            log.exception("%d claimed runs not handed off; held until their second", len(far))
            return list(prepared)
        handed = {id(p) for p in far}
        return [p for p in prepared if id(p) not in handed]

    def resume_claimed(
        self, starts: Sequence[StartMessage]
    ) -> list[PreparedStart | StartOutcome | Exception]:
        """Runs handed over by `hand_off`, read together (one call): each still held by the
        claim its message names is ready to run at its second, as its claimer would have
        run it; one that ended, or that another holder took over since (its lease expired:
        the sweep's), is left alone."""
        runs = self.store.get_runs([(m.job_id, m.slot) for m in starts])
        out: list[PreparedStart | StartOutcome | Exception] = []
        for msg, run in zip(starts, runs, strict=True):
            if run is None or run.status in TERMINAL_EX:
                if run is not None:
                    self.seen_ended(run)
                out.append(StartOutcome.dropped)
            elif not _claimed(run) or run.lease_token != msg.claim_token:
                out.append(StartOutcome.busy)
            else:
                try:
                    requests = self._slice(run, asset_ops(self.ops, run.assets), run.attempts)
                except Exception as exc:  # its message is redelivered; the others go on
                    log.exception("handed-off run %s %s not sliced", run.job_id, run.slot)
                    out.append(exc)
                    continue
                out.append(PreparedStart(run, str(msg.claim_token), requests))
        return out

    def _ahead(
        self, msg: StartMessage, claim_id: str | None
    ) -> tuple[PreparedStart, RunTransition] | None:
        """The claim with its job's slot that `_enter_unread` would write for this message
        now, unwritten, if the run is claimed on its own record; None if it would not be
        claimed so ahead (the message goes the usual way)."""
        hint, now = msg.hint, self.clock.now()
        early = wait_limit(msg.delivery.lead)
        if hint is None or hint.start_at - now > early:
            return None
        prepared = self._unread_entry(msg.job_id, msg.slot, hint, claim_id, now, early)
        if prepared is None or not runs_inline(prepared.run.operations, 1):
            return None
        assert prepared.enter is not None
        return prepared, self.slot_claim(prepared, now, prepared.enter)

    def _due(self, run: Run, now: float, lead: float) -> Run | StartOutcome:
        """The run, if it is due and free to claim (a buffered one first takes its job's
        slot); else what became of the message."""
        if run.status == ExStatus.stopping:
            return StartOutcome.stopped if self.stop_if_idle(run, now) else StartOutcome.stopping
        if run.buffered:
            limit = active_limit_of(run.config) or 1
            if not self.store.acquire_buffered(run, limit):
                return StartOutcome.buffered
            acquired = self.store.get_run(run.job_id, run.slot)
            if acquired is None or acquired.status != ExStatus.pending:
                return StartOutcome.dropped
            run = acquired
        early = run.start_at - now
        if early > wait_limit(lead):
            delay = min(MAX_SQS_DELAY, int(early - lead))
            self.queue.send_starts([StartMessage(run.job_id, run.slot, delay, lead=lead)])
            return StartOutcome.early
        return run if _claimable(run, now) else StartOutcome.busy

    def _slice_and_claim(
        self, run: Run, now: float, claim_id: str | None
    ) -> PreparedStart | StartOutcome:
        """Slice the run and claim it: a one-slice run as running inline, a sliced one as
        initializing (its slices written); a run with no slice completes at once."""
        try:
            pinned = self._pinned(run)
            if pinned is not None:
                run = replace(run, config=pinned)
            requests = self._slice(run, asset_ops(self.ops, run.assets), run.attempts + 1)
        except Exception as exc:  # a reader that cannot slice fails the run, once
            self.apply(run, run.fail_unsliced(now, error_text(exc)))
            return StartOutcome.failed
        begin = max(now, run.start_at)
        if not requests:
            done = self.apply(run, run.complete_unsliced(begin, now))
            return StartOutcome.completed if done else StartOutcome.busy
        token = _token(claim_id)
        if runs_inline(run.operations, len(requests)):
            claimed = self.apply(run, run.claim_inline(token, begin, now, config=pinned))
        else:
            lease = begin + run.lease_seconds
            claimed = self.apply(run, run.claim_initializing(token, lease, now, pinned))
            if claimed is not None:
                self.put_slices(run, requests, now)
        return StartOutcome.busy if claimed is None else PreparedStart(claimed, token, requests)

    def _prepare_entry(
        self, run: Run, now: float, claim_id: str | None, delivery: Delivery
    ) -> PreparedStart | StartOutcome:
        """A run that takes its job's slot with its claim: pinned and sliced now, claimed
        now if nothing else can want the slot before its second (`SlotEntry.enter_ahead`),
        else at its second (`SlotEntry.enter`)."""
        limit = active_limit_of(run.config)
        assert limit is not None
        try:
            pinned = self._pinned(run)
            if pinned is not None:
                run = replace(run, config=pinned)
            ops = asset_ops(self.ops, run.assets)
            requests = [] if run.presliced else self._slice(run, ops, run.attempts + 1)
        except Exception as exc:  # a reader that cannot slice fails the run, once
            self.apply(run, run.fail_unsliced(now, error_text(exc)))
            return StartOutcome.failed
        if not requests and not run.presliced:
            done = self.apply(run, run.complete_unsliced(max(now, run.start_at), now))
            return StartOutcome.completed if done else StartOutcome.busy
        token = _token(claim_id)
        prepared = PreparedStart(run, token, requests, limit, pinned, delivery)
        return self.enter_ahead(prepared, wait_limit(delivery.lead)) or prepared

    def _slice(
        self, run: Run, ops: Mapping[str, OpSpec], attempt: int, note: bool = True
    ) -> list[dict[str, Any]]:
        """The reader's slices; what it prints and logs meanwhile in the run's log
        (`SLICING`), and with `note` the traceback of its failure (raised again)."""
        work = partial(slice_requests, run.operations, run.args, ops)
        return self.sliced(run.ex_id, attempt, work, note)

    def _pinned(self, run: Run) -> dict[str, Any] | None:
        """The run's config with its asset references as the ids they name now (kept on
        the run, as Teraslice's execution shows them); None if nothing changes."""
        if self.ops is None or not run.assets:
            return None
        ids = self.ops.pin(run.assets)
        return None if ids == run.assets else {**run.config, "assets": ids}

    def _claim_unread(
        self, job_id: str, slot: str, hint: StartHint, claim_id: str | None, early_limit: float
    ) -> PreparedStart | None:
        """Claim a pending one-slice run from its start hint alone (one write, no read);
        None when the claim's conditions fail or the run is not due soon: the caller reads it."""
        now = self.clock.now()
        if hint.start_at - now > early_limit:
            return None
        if hint.config is not None:
            return self._enter_unread(job_id, slot, hint, claim_id, early_limit)
        known = Run(
            job_id,
            slot,
            hint.ex_id,
            scheduled_start=hint.start_at,
            config={"lease_seconds": hint.lease_seconds},
        )
        token = _token(claim_id)
        begin = max(now, hint.start_at)
        claimed = self.apply(known, known.claim_inline(token, begin, now, unread=True))
        if claimed is None:
            return None
        ops = asset_ops(self.ops, claimed.assets)
        return PreparedStart(claimed, token, self._slice(claimed, ops, claimed.attempts))

    def _enter_unread(
        self, job_id: str, slot: str, hint: StartHint, claim_id: str | None, early: float
    ) -> PreparedStart | None:
        """A one-slice run that takes its job's slot with its claim, known from its hint:
        claimed with the slot now (one transaction, no read) if it may enter ahead; None
        otherwise, or if the claim's conditions fail: the caller reads it."""
        now = self.clock.now()
        prepared = self._unread_entry(job_id, slot, hint, claim_id, now, early)
        if prepared is None or prepared.enter is None:
            return None
        return self._claim_with_slot(prepared, now, prepared.enter)

    def _unread_entry(
        self,
        job_id: str,
        slot: str,
        hint: StartHint,
        claim_id: str | None,
        now: float,
        early: float,
    ) -> PreparedStart | None:
        """The run a start hint with its config describes, prepared to take its job's slot
        with its claim ahead of its second; None if it may not (no limit, assets, not due
        soon enough or not spaced out, not one slice)."""
        if hint.config is None:
            return None
        known = Run(job_id, slot, hint.ex_id, hint.start_at, hint.config, args=hint.args)
        limit = active_limit_of(known.config)
        if limit is None or known.assets or not may_enter_ahead(known, now, early):
            return None
        try:
            requests = self._slice(known, {}, known.attempts + 1, note=False)
        except Exception:  # the read path fails the run, once, if it cannot be sliced
            return None
        if len(requests) != 1:
            return None
        return PreparedStart(known, _token(claim_id), requests, limit, hinted=True)

    def _resume_own_claim(
        self, run: Run, claim_id: str, now: float
    ) -> PreparedStart | StartOutcome:
        """This delivery's claim was applied but its answer lost: take the lease over under
        a fresh token (so an earlier holder, were it still alive, loses it) and go on from
        where the claim left off; slices already written are kept."""
        token = _token(claim_id)
        taken = self.apply(run, run.take_over(token, now))
        if taken is None:
            return StartOutcome.busy
        if taken.presliced:
            return PreparedStart(taken, token, [])
        ops = asset_ops(self.ops, taken.assets)
        requests = self._slice(taken, ops, taken.attempts)  # as at the claim
        if taken.status == ExStatus.initializing:
            self.put_slices(taken, requests, now)
        return PreparedStart(taken, token, requests)

    def _claim_presliced(
        self, run: Run, now: float, claim_id: str | None = None
    ) -> PreparedStart | StartOutcome:
        """A recovery: its slices were written when it was created; claim it to set going."""
        token = _token(claim_id)
        lease = max(now, run.start_at) + run.lease_seconds
        try:
            pinned = self._pinned(run)
        except Exception as exc:
            self.apply(run, run.fail_unsliced(now, error_text(exc)))
            return StartOutcome.failed
        claimed = self.apply(run, run.claim_initializing(token, lease, now, pinned))
        return StartOutcome.busy if claimed is None else PreparedStart(claimed, token, [])

    # ---- at the run's second ----------------------------------------------------------------
    def run_prepared(self, p: PreparedStart, gate: StartGate | None = None) -> StartOutcome:
        """At the run's second (waiting for it if need be): run a one-slice run to its end,
        or set a sliced run going with its first `workers` slices. With a `gate` (the runs
        a process starts on one second), the run tells it when it has begun, and a one-slice
        run's finishing write waits for the others to begin: finishing is off their start's
        path."""
        gate = gate or _NO_GATE
        try:
            wait = p.run.start_at - self.clock.now()
            if wait > 0:
                self.sleep(wait)
            if p.enter is not None:
                entered = self.enter(p)
                if not isinstance(entered, PreparedStart):
                    return entered
                p = entered
            begin = self.clock.now()
        finally:
            gate.begun()
        if p.run.presliced:
            return self._set_going(p.run, p.token, p.run.slices_total, begin)
        if runs_inline(p.run.operations, len(p.requests)):
            return self._run_inline(p.run, p.token, p.requests[0], begin, gate)
        return self._set_going(p.run, p.token, len(p.requests), begin)

    def _set_going(self, claimed: Run, token: str, total: int, begin: float) -> StartOutcome:
        """initializing -> running at the run's second, with its first slices handed out."""
        running = self.apply(claimed, claimed.set_going(token, total, begin))
        if running is None:
            return StartOutcome.lost_lease
        self.send_slices(running, range(running.queued_cursor))
        return StartOutcome.running

    def _run_inline(
        self, claimed: Run, token: str, request: dict[str, Any], begin: float, gate: StartGate
    ) -> StartOutcome:
        """A one-slice run: the run record is its own slice (claimed, processed, finished)."""
        ctx = SliceContext(
            claimed.ex_id,
            claimed.job_id,
            0,
            claimed.attempts,
            claimed.args,
            self.files,
            slot=claimed.slot,
        )

        def work() -> Any:
            ops = asset_ops(self.ops, claimed.assets)
            return process(claimed.operations, request, ctx, ops, self.secrets)

        result, failure = self.logged(claimed.ex_id, slice_id_for(0), claimed.attempts, work)
        gate.wait()
        if failure is not None:
            final = is_final(failure, None)
            return self._inline_failed(claimed, token, error_text(failure), final)
        end = self.clock.now()
        if self.apply(claimed, claimed.complete_inline(token, result, begin, end)):
            return StartOutcome.completed
        if self.stop_held(claimed, token, end):
            return StartOutcome.stopped
        return StartOutcome.lost_lease

    def _inline_failed(self, run: Run, token: str, error: str, final: bool = False) -> StartOutcome:
        """A one-slice run's attempt failed: let go to be retried after a backoff, or, after
        its last attempt (or a `final` failure), failed."""
        now = self.clock.now()
        if run.may_retry and not final:
            delay = retry_delay(run.attempts)
            if self.apply(run, run.retry_inline(token, now, delay, error)):
                self.queue.send_starts([StartMessage(run.job_id, run.slot, delay)])
            return StartOutcome.retry
        self.apply(run, run.fail_inline(token, now, error))
        return StartOutcome.failed
