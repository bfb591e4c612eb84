"""Runs (Teraslice executions): one per (job, scheduled start) slot."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from chalicelib.domain.jobs import JobDefinition
from chalicelib.domain.timefmt import slot_key
from chalicelib.domain.transitions import ExStatus

START_LEAD_S = 2  # start messages arrive this early; the start worker waits out the rest


# a run's config may predate a field: it then has the job definition's default
_JOB_DEFAULTS: dict[str, int] = {
    name: int(JobDefinition.model_fields[name].default)
    for name in ("max_retries", "timeout_seconds", "lease_seconds")
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

    @property
    def max_retries(self) -> int:
        return int(self.config.get("max_retries", _JOB_DEFAULTS["max_retries"]))

    @property
    def timeout_seconds(self) -> int:
        return int(self.config.get("timeout_seconds", _JOB_DEFAULTS["timeout_seconds"]))

    @property
    def lease_seconds(self) -> int:
        return int(self.config.get("lease_seconds", _JOB_DEFAULTS["lease_seconds"]))

    @property
    def operations(self) -> list[dict[str, Any]]:
        return list(self.config.get("operations", []))

    @property
    def start_at(self) -> float:
        """When the run should begin: its slot, plus the job's jitter for this slot."""
        return self.start_after if self.start_after is not None else self.scheduled_start

    @property
    def final_status(self) -> ExStatus:
        return ExStatus.failed if self.failed else ExStatus.completed


@dataclass(frozen=True)
class StartHint:
    """What a start message carries so that a one-slice run is claimed without being read
    first: its id (the claim is conditioned on it), when it begins and its lease."""

    ex_id: str
    start_at: float
    lease_seconds: int

    def to_body(self) -> dict[str, Any]:
        return {"ex_id": self.ex_id, "start_at": self.start_at, "lease": self.lease_seconds}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> StartHint | None:
        try:
            return cls(str(body["ex_id"]), float(body["start_at"]), int(body["lease"]))
        except (KeyError, TypeError, ValueError):
            return None
