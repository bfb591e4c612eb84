"""Slices: the unit of work a worker claims, with a lease, and the retry policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.domain.transitions import SliceState

MAX_SQS_DELAY = 900


# the run log's slice id for what the reader printed and logged while slicing the run
SLICING = "slicing"


def slice_id_for(position: int) -> str:
    """Slice ids sort in the order their run hands them out."""
    return f"{position:06d}"


def retry_delay(attempt: int, base: float = 1.0, cap: float = MAX_SQS_DELAY) -> int:
    """Exponential backoff in whole seconds (1, 2, 4, ...) capped at SQS's 15-minute delay."""
    return int(min(cap, base * (2 ** max(0, attempt - 1))))


@dataclass(frozen=True)
class Waiting:
    """What a waiting op (`stepfunctions` or `ecs` with `wait: true`) returns instead of
    its result: the thing it started, to be checked again in `check_seconds` (the slice
    stays open; no worker is held). `record` is kept on the slice (`Slice.wait`) and given
    back to the op at the check."""

    record: dict[str, Any]
    check_seconds: int


@dataclass
class Slice:
    """One slice of an execution. `order` is its identity, the reader's order, kept by
    the slices a recovery reprocesses; its `slice_id` says its place in its own run, the
    order in which that run hands its slices out."""

    ex_id: str
    slice_id: str
    order: int
    request: dict[str, Any]
    state: SliceState = SliceState.pending
    attempts: int = 0
    lease_token: str | None = None
    lease_expires_at: float | None = None
    not_before: float | None = None
    result: Any = None
    error: str | None = None
    created: float = 0.0
    updated: float = 0.0
    # what the slice waits for (a started Step Functions execution, an ECS task), while its
    # op waits: see Slice.waiting and docs/targets-waiting.md
    wait: dict[str, Any] | None = None

    @property
    def position(self) -> int:
        """Its place among its run's slices (equal to `order` but in a recovery)."""
        return int(self.slice_id)

    def complete(self, token: str, now: float, result: Any) -> SliceEnding:
        """The worker holding the slice by `token` finished it, with `result`."""
        return SliceEnding(True, now, result=result, token=token)

    def fail(self, token: str, now: float, error: str) -> SliceEnding:
        """The worker holding the slice by `token` ends it in error: its last attempt
        failed."""
        return SliceEnding(False, now, error=error, token=token)

    def abandon(self, now: float, error: str) -> SliceEnding:
        """The sweep ends it in error: its worker was lost too often. No worker holds it, so
        the ending names the lease the sweep saw expire."""
        return SliceEnding(False, now, error=error, expected_lease=self.lease_expires_at)


@dataclass(frozen=True)
class SliceEnding:
    """How a started slice ends (SliceStore.finish_slice persists it): completed with its
    `result`, or in error with `error`, at `now`. The worker that holds the slice names its
    lease `token`; the sweep, giving up on a lost worker's slice, has no token and names
    the lease it saw instead (`expected_lease`). Made by `Slice.complete / fail /
    abandon`."""

    completed: bool
    now: float
    result: Any = None
    error: str | None = None
    token: str | None = None
    expected_lease: float | None = None

    @property
    def worker_lost(self) -> bool:
        """The sweep's ending: the slice's worker never came back."""
        return self.token is None
