"""Limits that agree: `timeout_seconds` fails a run at its timeout (within a tick), not
when a longer lease runs out."""

from __future__ import annotations

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import FakeClock
from tests.helpers import deliver

SLICED = {
    "name": "slow",
    "timeout_seconds": 10,
    "lease_seconds": 60,
    "operations": [{"_op": "range", "end": 3}, {"_op": "noop"}],
}


def _started_and_stuck(
    container: Container, queue: MemoryQueue, body: dict[str, object]
) -> tuple[str, str]:
    """A run started whose work is then lost: its start delivered, its slices (or its
    retry) never, so it makes no progress after its start."""
    job, run = container.jobs.submit(body, start=True)
    assert run is not None
    [start] = queue.take()
    deliver(container, start)
    queue.messages.clear()
    return job.job_id, run.slot


def test_the_timeout_fires_on_time_not_at_the_lease_end(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job_id, slot = _started_and_stuck(container, queue, SLICED)
    running = container.store.get_run(job_id, slot)
    assert running is not None and running.status == ExStatus.running
    assert running.check_at is not None and running.check_at <= running.updated + 11
    container.supervisor.tick(running.updated + 9)
    live = container.store.get_run(job_id, slot)
    assert live is not None and live.status == ExStatus.running  # not yet
    clock.t = running.updated + 12  # one tick past the timeout, long before the lease (60 s)
    container.supervisor.tick(clock.t)
    ended = container.store.get_run(job_id, slot)
    assert ended is not None and ended.status == ExStatus.failed, ended
    assert any("timeout_seconds 10" in str(e) for e in ended.errors), ended.errors
