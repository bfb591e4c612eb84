"""What handling one message led to: logged, returned by the handlers, read by tests.

The values are the words the workers have always reported."""

from __future__ import annotations

from enum import StrEnum


class StartOutcome(StrEnum):
    """What a start message did."""

    dropped = "dropped"  # no such run, it has ended, or it is another execution now
    buffered = "buffered"  # it waits for its job's active slot
    skipped = "skipped"  # its job was at its limit of active runs at its second
    missed = "missed"  # it came too late to start (the catch-up policy did not keep it)
    early = "early"  # not due yet: sent again to arrive nearer its second
    handed_off = "handed-off"  # claimed far ahead: a later message runs it at its second
    busy = "busy"  # held by another claim, or the claim lost a race
    stopping = "stopping"  # asked to stop, something of it still in flight
    stopped = "stopped"
    running = "running"  # a sliced run set going with its first slices
    completed = "completed"
    retry = "retry"  # a one-slice run's slice failed and will be retried
    failed = "failed"
    lost_lease = "lost-lease"  # its claim was taken over meanwhile


class SliceOutcome(StrEnum):
    """What a slice message did."""

    dropped = "dropped"  # its run is not running (or is another execution now)
    duplicate = "duplicate"  # the slice is not claimable: done, or held by a live lease
    completed = "completed"
    retry = "retry"
    failed = "failed"  # its last attempt failed
    lost_lease = "lost-lease"  # its lease was taken over while it ran
    waiting = "waiting"  # its op started something and waits for its end: checked later
    released = "released"  # no time left in the batch: sent again, for another invocation
