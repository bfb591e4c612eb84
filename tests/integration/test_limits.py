"""Limits that agree: `timeout_seconds` fails a run at its timeout (within a tick), not
when a longer lease runs out; a slice batch starts no slice the function has no time left
for (an op may run `max_op_seconds`): it is released for another invocation."""

from __future__ import annotations

import json

from chalicelib.adapters.memory import MemoryQueue, Message
from chalicelib.bootstrap import Container
from chalicelib.domain.transitions import ExStatus
from chalicelib.entrypoints.handlers import SLICE_TIME_MARGIN_S, on_slice_batch
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


class _Lambda:
    """A Lambda context with this many milliseconds left."""

    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def _sqs_event(messages: list[Message]) -> dict[str, object]:
    records = [
        {
            "messageId": f"m{i}",
            "receiptHandle": f"r{i}",
            "body": json.dumps(m.body),
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:slices",
        }
        for i, m in enumerate(messages)
    ]
    return {"Records": records}


def test_a_slice_the_batch_has_no_time_for_is_released_not_run(
    container: Container, queue: MemoryQueue
) -> None:
    body = {**SLICED, "workers": 3}
    job, run = container.jobs.submit(body, start=True)
    assert run is not None
    deliver(container, queue.take()[0])
    slices = queue.take()
    assert len(slices) == 3 and all(m.kind == "slice" for m in slices)
    op_time = container.settings.limits.max_op_seconds
    short = _Lambda(int((op_time + SLICE_TIME_MARGIN_S - 1) * 1000))
    answer = on_slice_batch(_sqs_event(slices), short)
    assert answer == {"batchItemFailures": []}  # not back after a visibility timeout
    assert sorted(m.body["slice_id"] for m in queue.take()) == sorted(
        m.body["slice_id"] for m in slices
    )  # sent again at once, for another invocation
    stored = container.store.get_run(job.job_id, run.slot)
    assert stored is not None and (stored.processed, stored.remaining) == (0, 3)
    assert all(s.attempts == 0 for s in container.store.list_slices(run.ex_id))
    enough = _Lambda(int((op_time + SLICE_TIME_MARGIN_S + 1) * 1000))
    assert on_slice_batch(_sqs_event(slices), enough) == {"batchItemFailures": []}
    done = container.store.get_run(job.job_id, run.slot)
    assert done is not None and done.processed == 3 and done.status == ExStatus.completed
