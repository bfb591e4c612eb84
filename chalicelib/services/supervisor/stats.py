"""What one supervisor tick did."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from chalicelib.ports import Clock


@dataclass
class TickStats:
    """What one tick did; counted, so comparable across machines."""

    halted: bool = False
    shards_queried: int = 0
    jobs_read: int = 0
    runs_created: int = 0
    catchup_runs: int = 0  # of runs_created: missed slots kept by the catch-up policy
    slot_conflicts: int = 0
    slots_missed: int = 0
    starts_sent: int = 0
    stalled_read: int = 0
    resent: int = 0
    slices_failed: int = 0
    finalized: int = 0
    alerts: int = 0
    errors: int = 0
    # Seconds: the tick's wall time, and when its runs were created against their slots
    # (below zero: ahead of the slot, as look-ahead intends; above: late already).
    duration_s: float = 0.0
    created_from_slot_min_s: float | None = None
    created_from_slot_max_s: float | None = None
    notified: int = 0  # notifications delivered from the outbox
    notify_failed: int = 0  # notifications given up on (kept as failed)
    notify_recovered: int = 0  # events an earlier tick's write left due, recorded by this one
    ledger_deferred: int = 0  # missed slots left noted on their jobs for a later tick
    sweep_deferred: int = 0  # stalled runs left, still due, to the next tick's sweep
    # Seconds of the tick's wall time in each phase, in order: reading the due jobs,
    # writing their runs (with the starts sent), the missed slots' ledger, the sweep.
    read_s: float = 0.0
    runs_s: float = 0.0
    ledger_s: float = 0.0
    sweep_s: float = 0.0

    def figures(self) -> dict[str, Any]:
        """What the supervisor record keeps of this tick: the figures that are not zero
        (DynamoDB bills an item's writes by the KB, and every tick writes the record);
        `full_figures` fills the others in."""
        return {k: v for k, v in asdict(self).items() if v}

    def merge(self, other: TickStats) -> None:
        """Add another tick's counts and widen the creation range (the halted flag and
        the duration are not counts)."""
        for f in fields(self):
            if f.type == "int":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        for offset in (other.created_from_slot_min_s, other.created_from_slot_max_s):
            if offset is not None:
                self.created_at(offset)

    def created_at(self, from_slot: float) -> None:
        """Count a run's creation `from_slot` seconds after (or, below zero, before) its slot."""
        from_slot = round(from_slot, 3)
        low, high = self.created_from_slot_min_s, self.created_from_slot_max_s
        self.created_from_slot_min_s = from_slot if low is None else min(low, from_slot)
        self.created_from_slot_max_s = from_slot if high is None else max(high, from_slot)


def full_figures(kept: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A kept tick's figures (`TickStats.figures`) with the zeros it left out."""
    return None if kept is None else {**asdict(TickStats()), **kept}


def seconds_since(clock: Clock, began: float) -> float:
    """The seconds from `began` to now, as the tick's figures give them (milliseconds)."""
    return round(clock.now() - began, 3)
