"""Slices: the unit of work a worker claims, with a lease, and the retry policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.domain.transitions import SliceState

MAX_SQS_DELAY = 900


def slice_id_for(order: int) -> str:
    """Slice ids sort in slicer order."""
    return f"{order:06d}"


def retry_delay(attempt: int, base: float = 1.0, cap: float = MAX_SQS_DELAY) -> int:
    """Exponential backoff in whole seconds (1, 2, 4, ...) capped at SQS's 15-minute delay."""
    return int(min(cap, base * (2 ** max(0, attempt - 1))))


@dataclass
class Slice:
    """One slice of an execution."""

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
