"""Runs (Teraslice executions): one per (job, scheduled start) slot."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from chalicelib.domain.jobs import JobDefinition
from chalicelib.domain.slices import slice_id_for
from chalicelib.domain.timefmt import slot_key
from chalicelib.domain.transitions import ACTIVE_EX, TERMINAL_EX, ExStatus, ex_sources

START_LEAD_S = 2  # start messages arrive this early; the start worker waits out the rest
TIMEOUT_SLACK_S = 1  # a run times out after more than timeout_seconds without progress
MAX_WAIT_S = 8  # a start function holds a claimed run this long at most before its second
MAX_LEAD_S = 30  # a burst's runs are claimed this early at most (held longer: handed off)
GROUP_RUNS = 25  # a burst's runs in one start message (a start worker takes ten: 250 runs)
HANDOFF_LEAD_S = 4  # a hand-off arrives this early: a cold start, a group's read, its threads
CLAIM_CALLS = 2  # store calls a run's claim takes ahead of its second (a read, a write)
RESEND_AFTER_S = 2  # a run created ahead not started this long after its second: re-sent
CATCHUP_RECHECK_S = 5  # a waiting catch-up run looks for a free slot at least this often


def usable_lead(lead: float) -> float:
    """A start message's lead within what the start path allows (START_LEAD_S..MAX_LEAD_S)."""
    return min(float(MAX_LEAD_S), max(float(START_LEAD_S), lead))


def burst_lead(runs: int, claim_rate: float) -> float:
    """How early the start messages of `runs` runs due on the same second arrive: long
    enough for the store, at `claim_rate` calls a second, to take all their claims before
    that second, so the second finds them ready (and never less than START_LEAD_S). Past
    MAX_WAIT_S a claimed run's wait is handed off to a later message (`StartPath.hand_off`)
    instead of held by the function that claimed it."""
    needed = START_LEAD_S + runs * CLAIM_CALLS / claim_rate if claim_rate > 0 else MAX_LEAD_S
    return min(float(MAX_LEAD_S), round(needed, 1))


def start_delay(slot: float, now: float, lead: float = START_LEAD_S) -> int:
    """Whole-second SQS delay that lands a start message `lead` seconds before its slot:
    delivery (a poll, a Lambda trigger) takes time, and the start worker claims the run
    ahead and waits out the rest to the sub-second."""
    return max(0, math.floor(slot - now - lead))


# a run's config may predate a field: it then has the job definition's default
_JOB_DEFAULTS: dict[str, int] = {
    name: int(JobDefinition.model_fields[name].default)
    for name in ("max_retries", "timeout_seconds", "lease_seconds", "misfire_grace_seconds")
}


class MissReason(StrEnum):
    """Why a slot did not run (the ledger's reason)."""

    overlap = "overlap"
    misfire = "misfire"
    suspended = "suspended"
    halted = "halted"
    max_active_runs = "max_active_runs"


class Trigger(StrEnum):
    schedule = "schedule"
    manual = "manual"
    recover = "recover"


def scheduled_slot(ts: float) -> str:
    """The slot key of a scheduled run: the scheduled start itself, so a slot runs once."""
    return slot_key(ts)


def manual_slot(ts: float, token: str | None = None) -> str:
    """An on-demand run's slot: its request time plus a suffix, sorting with scheduled ones."""
    return f"{slot_key(ts)}#m-{token or uuid.uuid4().hex[:12]}"


_P, _I, _R = ExStatus.pending, ExStatus.initializing, ExStatus.running
_PAUSED, _STOPPING = ExStatus.paused, ExStatus.stopping


@dataclass(frozen=True)
class Guard:
    """When a run write applies: the run's status is one of `sources` (bounded by the
    execution table, see `RunTransition.sources`) and every given condition holds."""

    sources: frozenset[ExStatus]
    lease_token: str | None = None  # the lease is held by this token
    lease_expired_before: float | None = None  # no lease, or one that expired before this
    check_at: float | None = None  # check_at still equals this (one sweeper wins)
    remaining_zero: bool = False  # no slice remains
    cursor_below_total: bool = False  # a slice is left to hand out
    unread: bool = False  # known only from a start hint: same ex_id, not buffered/presliced
    same_config: bool = False  # and the hint's config is the stored one (it runs that)


@dataclass(frozen=True)
class RunTransition:
    """One conditional write of a run, as the aggregate decides it: the status it moves to
    (None: the status stays), the fields it sets (None removes one), the counters it adds
    to, and its guard. A store applies it whole or not at all."""

    guard: Guard
    target: ExStatus | None = None
    sets: Mapping[str, Any] = field(default_factory=dict)
    adds: Mapping[str, int] = field(default_factory=dict)
    acquire: int | None = None  # the write also takes one of its job's `acquire` active slots

    def taking_slot(self, limit: int) -> RunTransition:
        """The same write, made only if the run's job holds fewer than `limit` active runs,
        and taking one of its active slots with it (the overlap decision, at the run's
        second)."""
        return replace(self, acquire=limit, sets={**self.sets, "holds_slot": True})

    @property
    def terminal(self) -> bool:
        return self.target is not None and self.target in TERMINAL_EX

    @property
    def sources(self) -> frozenset[ExStatus]:
        """The guard's states that the execution table lets move to the target."""
        if self.target is None:
            return self.guard.sources
        return ex_sources(self.target, self.guard.sources)

    def admits(self, stored: Run, known: Run) -> bool:
        """Whether the write applies to the `stored` record (the condition a store checks);
        `known` is the run the transition was made from."""
        g = self.guard
        lease = stored.lease_expires_at
        return stored.status in self.sources and all(
            (
                g.lease_token is None or stored.lease_token == g.lease_token,
                g.lease_expired_before is None or lease is None or lease < g.lease_expired_before,
                g.check_at is None or stored.check_at == g.check_at,
                not g.remaining_zero or stored.remaining == 0,
                not g.cursor_below_total or stored.queued_cursor < stored.slices_total,
                not g.unread
                or (
                    stored.ex_id == known.ex_id
                    and not (stored.buffered or stored.presliced or stored.deleted)
                ),
                not g.same_config or stored.config == known.config,
            )
        )

    def applied_to(self, run: Run) -> Run:
        """`run` as the write leaves it: an ended run has no lease, no check and no slot,
        and waits to be counted in the cluster's totals."""
        changes: dict[str, Any] = dict(self.sets)
        for name, amount in self.adds.items():
            changes[name] = (getattr(run, name) or 0) + amount
        if self.target is not None:
            changes["status"] = self.target
        if self.terminal:
            changes.update(
                # one with events still to record stays on the sweep until they are
                check_at=changes.get("check_at") if changes.get("notify_due") else None,
                lease_token=None,
                lease_expires_at=None,
                holds_slot=False,
                tally_pending=True,
            )
        return replace(run, **changes)


def with_due(
    transition: RunTransition, due: Mapping[str, dict[str, Any]] | None, now: float
) -> RunTransition:
    """The write, also marking events still to record on the run (`Run.notify_due`): the
    run stays on the sweep, due now, until they are recorded (`NotificationService.record_due`)."""
    if not due:
        return transition
    sets = {**transition.sets, "notify_due": dict(due), "check_at": now}
    return replace(transition, sets=sets)


@dataclass
class Run:
    """An execution of a job for one slot, with its counters and lease."""

    job_id: str
    slot: str
    ex_id: str
    scheduled_start: float
    config: dict[str, Any]
    trigger: Trigger = Trigger.schedule
    status: ExStatus = ExStatus.pending
    args: str | None = None
    created: float = 0.0
    updated: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    workers: int = 1
    slices_total: int = 0
    processed: int = 0
    failed: int = 0
    remaining: int = 0
    queued_cursor: int = 0
    inline: bool = False
    attempts: int = 0
    lease_token: str | None = None
    lease_expires_at: float | None = None
    check_at: float | None = None
    result: Any = None
    has_errors: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    holds_slot: bool = False
    buffered: bool = False
    start_after: float | None = None
    presliced: bool = False
    recovered_from: str | None = None
    deleted: bool = False
    workers_lost: int = 0  # slices given up because their worker's lease kept expiring
    tally_pending: bool = False  # ended, not yet added to the cluster counters
    catchup: bool = False  # a missed slot run late: it waits its turn rather than overlap
    ahead_of_catchup: bool = False  # its job's catch-up runs wait for it: its end nudges them
    # events of the supervisor's write still to record (event -> detail); kept on the sweep
    # (check_at) until they are, so a supervisor that died after the write loses none
    notify_due: dict[str, dict[str, Any]] | None = None

    @property
    def max_retries(self) -> int:
        return int(self.config.get("max_retries", _JOB_DEFAULTS["max_retries"]))

    @property
    def timeout_seconds(self) -> int:
        return int(self.config.get("timeout_seconds", _JOB_DEFAULTS["timeout_seconds"]))

    def check_after(self, progress: float, lease_check: float) -> float:
        """When the sweep looks at the run after its progress at `progress`: at its lease
        check, or just past its `timeout_seconds` if that comes first, so a timeout fails
        the run within a tick of it, not when a longer lease runs out."""
        return min(lease_check, progress + self.timeout_seconds + TIMEOUT_SLACK_S)

    @property
    def lease_seconds(self) -> int:
        return int(self.config.get("lease_seconds", _JOB_DEFAULTS["lease_seconds"]))

    @property
    def misfire_grace_seconds(self) -> int:
        default = _JOB_DEFAULTS["misfire_grace_seconds"]
        return int(self.config.get("misfire_grace_seconds", default))

    @property
    def operations(self) -> list[dict[str, Any]]:
        return list(self.config.get("operations", []))

    @property
    def assets(self) -> list[str]:
        """The job's asset references (as the claim pinned them: ids)."""
        return list(self.config.get("assets") or [])

    @property
    def start_at(self) -> float:
        """When the run should begin: its slot, plus the job's jitter for this slot."""
        return self.start_after if self.start_after is not None else self.scheduled_start

    @property
    def final_status(self) -> ExStatus:
        return ExStatus.failed if self.failed else ExStatus.completed

    @property
    def may_retry(self) -> bool:
        """A one-slice run whose last attempt failed may be run again."""
        return self.attempts <= self.max_retries

    def _noted(self, error: str) -> list[dict[str, Any]]:
        return [*self.errors, {"slice_id": None, "error": error}]

    # ---- transitions: each returns the write; the store applies it, or not ---------------
    def claim_inline(
        self,
        token: str,
        begin: float,
        now: float,
        *,
        config: dict[str, Any] | None = None,
        unread: bool = False,
        same_config: bool = False,
    ) -> RunTransition:
        """A one-slice run claimed to run on its own record: running, inline, its lease
        covering the wait until `begin`. Only from pending if the caller has not read the
        run (`unread`: it knows the run from a start hint; `same_config`: the hint carried
        the run's config too, which the stored one must equal)."""
        lease = begin + self.lease_seconds
        sets: dict[str, Any] = {
            "inline": True,
            "slices_total": 1,
            "remaining": 1,
            "queued_cursor": 1,
            "lease_token": token,
            "lease_expires_at": lease,
            "check_at": self.check_after(now, lease + 1),
            "started_at": self.started_at or begin,
            "updated": now,
        }
        if config is not None:
            sets["config"] = config
        sources = frozenset({_P} if unread else {_P, _I, _R})
        guard = Guard(sources, lease_expired_before=now, unread=unread, same_config=same_config)
        return RunTransition(guard, _R, sets, {"attempts": 1})

    def claim_initializing(
        self, token: str, lease: float, now: float, config: dict[str, Any] | None = None
    ) -> RunTransition:
        """A sliced run claimed, until `lease`, to write its slices and set them going."""
        sets: dict[str, Any] = {
            "lease_token": token,
            "lease_expires_at": lease,
            "check_at": self.check_after(now, lease + 1),
            "updated": now,
        }
        if config is not None:
            sets["config"] = config
        return RunTransition(Guard(frozenset({_P, _I}), lease_expired_before=now), _I, sets)

    def take_over(self, token: str, now: float) -> RunTransition:
        """The holder of the run's lease renames it `token` (its claim's answer was lost)."""
        guard = Guard(frozenset({self.status}), lease_token=self.lease_token)
        return RunTransition(guard, None, {"lease_token": token, "updated": now})

    def set_going(self, token: str, total: int, begin: float) -> RunTransition:
        """initializing -> running at the run's second, its first `workers` slices handed
        out (the new run's queued_cursor says how many)."""
        sets = {
            "slices_total": total,
            "remaining": total,
            "queued_cursor": min(max(1, self.workers), total),
            "lease_token": None,
            "lease_expires_at": None,
            "check_at": self.check_after(begin, begin + self.lease_seconds),
            "started_at": self.started_at or begin,
            "updated": begin,
        }
        return RunTransition(Guard(frozenset({_I}), lease_token=token), _R, sets)

    def complete_unsliced(self, begin: float, now: float) -> RunTransition:
        """A pending run whose reader gave no slice: completed at once."""
        sets = {"started_at": begin, "finished_at": begin, "updated": now}
        return RunTransition(Guard(frozenset({_P})), ExStatus.completed, sets)

    def complete_inline(self, token: str, result: Any, begin: float, end: float) -> RunTransition:
        """A one-slice run's slice succeeded: the run is completed with its result."""
        sets = {
            "processed": 1,
            "remaining": 0,
            "result": result,
            "started_at": begin if self.attempts == 1 else self.started_at or begin,
            "finished_at": end,
            "updated": end,
        }
        return RunTransition(
            Guard(frozenset({_R, _PAUSED}), lease_token=token), ExStatus.completed, sets
        )

    def retry_inline(self, token: str, now: float, delay: int, error: str) -> RunTransition:
        """A one-slice run's slice failed and may be retried: its lease is let go, and the
        sweep looks at it again once its retry (`delay` away) should have run."""
        sets = {
            "lease_token": None,
            "lease_expires_at": None,
            "check_at": self.check_after(now, now + delay + self.lease_seconds),
            "errors": self._slice_error(error, attempt=True),
            "updated": now,
        }
        return RunTransition(Guard(frozenset({_R, _PAUSED}), lease_token=token), None, sets)

    def _slice_error(self, error: str, *, attempt: bool) -> list[dict[str, Any]]:
        """A one-slice run's error, kept as its one slice's."""
        if attempt:
            return [{"slice_id": slice_id_for(0), "attempt": self.attempts, "error": error}]
        return [{"slice_id": slice_id_for(0), "error": error}]

    def _failed(
        self, guard: Guard, now: float, errors: list[dict[str, Any]], *, own_slice: bool
    ) -> RunTransition:
        """Every failure of a run: failed, with why; a one-slice run (`own_slice`) also
        counts its slice as failed."""
        sets: dict[str, Any] = {
            "has_errors": True,
            "finished_at": now,
            "updated": now,
            "errors": errors,
        }
        if own_slice:
            sets.update(failed=1, remaining=0)
        return RunTransition(guard, ExStatus.failed, sets)

    def fail_inline(self, token: str, now: float, error: str) -> RunTransition:
        """A one-slice run's slice failed its last attempt (the worker holding it says)."""
        guard = Guard(frozenset({_R, _PAUSED}), lease_token=token)
        return self._failed(guard, now, self._slice_error(error, attempt=True), own_slice=True)

    def give_up_inline(
        self, now: float, error: str, due: Mapping[str, dict[str, Any]] | None = None
    ) -> RunTransition:
        """A one-slice run whose worker kept being lost (the sweep says, once); `due`: its
        events still to record (`with_due`)."""
        guard = Guard(frozenset({_R}), lease_expired_before=now, check_at=self.check_at)
        failed = self._failed(guard, now, self._slice_error(error, attempt=False), own_slice=True)
        return with_due(failed, due, now)

    def fail_unsliced(self, now: float, error: str) -> RunTransition:
        """A run that could not be sliced (its reader failed): failed before it ran."""
        return self._failed(Guard(frozenset({_P, _I})), now, self._noted(error), own_slice=False)

    def time_out(
        self, now: float, note: str, due: Mapping[str, dict[str, Any]] | None = None
    ) -> RunTransition:
        """A run that made no progress for too long (the sweep says, once); `due`: its
        events still to record (`with_due`)."""
        guard = Guard(frozenset({self.status}), check_at=self.check_at)
        return with_due(self._failed(guard, now, self._noted(note), own_slice=False), due, now)

    def hand_out_next(self, now: float) -> RunTransition:
        """One more slice of a running run handed out, if one is left."""
        guard = Guard(frozenset({_R}), cursor_below_total=True)
        return RunTransition(guard, None, {"updated": now}, {"queued_cursor": 1})

    def finalize(self, now: float) -> RunTransition:
        """running -> completed / failed once no slice remains; one caller wins."""
        sets = {"finished_at": now, "updated": now, "has_errors": self.failed > 0}
        return RunTransition(Guard(frozenset({_R}), remaining_zero=True), self.final_status, sets)

    def skip(self, now: float, reason: MissReason) -> RunTransition:
        """A run that has not started finds its job at its limit of active runs at its
        second: it does not run, and the ledger says why."""
        sets = {"reason": str(reason), "finished_at": now, "updated": now}
        return RunTransition(Guard(frozenset({_P})), ExStatus.skipped, sets)

    def miss(self, now: float, reason: MissReason) -> RunTransition:
        """A run created ahead whose start came too late (its message lost with the stack,
        workers down): a missed slot the catch-up policy does not keep."""
        sets = {"reason": str(reason), "finished_at": now, "updated": now}
        return RunTransition(Guard(frozenset({_P})), ExStatus.missed, sets)

    def stop_pending(self, now: float, reason: str) -> RunTransition:
        """A run that has not started stops at once."""
        sets = {"finished_at": now, "updated": now, "errors": self._noted(f"stopped: {reason}")}
        return RunTransition(Guard(frozenset({_P})), ExStatus.stopped, sets)

    def ask_stop(self, now: float, reason: str) -> RunTransition:
        """A started run stops taking slices; it ends once none is in flight."""
        sets = {"check_at": now, "updated": now, "errors": self._noted(f"stopped: {reason}")}
        return RunTransition(Guard(frozenset({_P, _I, _R, _PAUSED})), _STOPPING, sets)

    def stop(self, now: float, token: str | None = None) -> RunTransition:
        """stopping -> stopped (by the holder of its lease, if `token`)."""
        guard = Guard(frozenset({_STOPPING}), lease_token=token)
        return RunTransition(guard, ExStatus.stopped, {"finished_at": now, "updated": now})

    def bump(self, now: float) -> RunTransition:
        """This tick's claim of the run's repair: one sweeper wins its check_at."""
        guard = Guard(frozenset({self.status}), check_at=self.check_at)
        return RunTransition(guard, None, {"check_at": now + self.recheck_after(now)})

    def recheck_after(self, now: float) -> float:
        """When the sweep looks at this run again: a lease later, but a waiting catch-up run
        every CATCHUP_RECHECK_S within its misfire grace: the run holding its job's slot may
        be one whose end nudges nobody (a run of a job that neither buffers nor catches up
        on every slot)."""
        waited = now - self.start_at
        if self.catchup and self.status == _P and waited <= self.misfire_grace_seconds:
            return min(float(self.lease_seconds), float(CATCHUP_RECHECK_S))
        return float(self.lease_seconds)

    def pause(self, now: float) -> RunTransition:
        """running -> paused: no slice is handed out until it resumes."""
        return RunTransition(Guard(frozenset({_R})), _PAUSED, {"updated": now})

    def resume(self, now: float) -> RunTransition:
        """paused -> running."""
        sets = {"updated": now, "check_at": self.check_after(now, now + self.lease_seconds)}
        return RunTransition(Guard(frozenset({_PAUSED})), _R, sets)

    def set_workers(self, workers: int, now: float) -> RunTransition:
        """How many slices may be in flight at once, while the run has not ended."""
        guard = Guard(frozenset(ACTIVE_EX))
        return RunTransition(guard, None, {"workers": workers, "updated": now})


@dataclass(frozen=True)
class Delivery:
    """How a start message came: how early before its run's second it may claim the run
    (`lead`, a burst's is longer), and when the tick that created the run sent it
    (`sent_at`; None for a message re-sent by the sweep or a retry)."""

    lead: float = START_LEAD_S
    sent_at: float | None = None

    def since(self, run: Run, now: float) -> float:
        """How late the run's start is: from its second, its creation, or this message's
        sending by the tick that created it, whichever is latest (a slow tick's own delay
        does not make its runs late; a message lost and re-sent does)."""
        return now - max(run.start_at, run.created, self.sent_at or run.start_at)


@dataclass(frozen=True)
class StartHint:
    """What a start message carries so that a one-slice run is claimed without being read
    first: its id (the claim is conditioned on it), when it begins and its lease. A run
    that takes its job's active slot with its claim needs its config and args as well (the
    claim is a transaction, which returns no item): the claim is also conditioned on the
    stored config being that one, so the message cannot make a run do anything else."""

    ex_id: str
    start_at: float
    lease_seconds: int
    config: dict[str, Any] | None = None
    args: str | None = None

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ex_id": self.ex_id,
            "start_at": self.start_at,
            "lease": self.lease_seconds,
        }
        if self.config is not None:
            body["config"] = self.config
            if self.args is not None:
                body["args"] = self.args
        return body

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> StartHint | None:
        config, args = body.get("config"), body.get("args")
        try:
            return cls(
                str(body["ex_id"]),
                float(body["start_at"]),
                int(body["lease"]),
                config if isinstance(config, dict) else None,
                args if isinstance(args, str) else None,
            )
        except (KeyError, TypeError, ValueError):
            return None
