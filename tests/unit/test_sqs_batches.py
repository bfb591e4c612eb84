"""SendMessageBatch takes ten messages and 256 KiB in all: a burst's groups of starts are
sent in as many calls as that takes, none over either limit."""

from __future__ import annotations

import json

from chalicelib.adapters.sqs import BATCH_BYTES, _batches


def test_ten_small_messages_a_call() -> None:
    bodies = [({"job_id": f"j{i}", "slot": "s"}, 3) for i in range(25)]
    batches = _batches(bodies)
    assert [len(b) for b in batches] == [10, 10, 5]
    assert {e["DelaySeconds"] for b in batches for e in b} == {3}


def test_large_messages_are_split_by_size() -> None:
    big = {"starts": [{"job_id": "j", "slot": "s", "config": {"x": "y" * 40_000}}]}
    size = len(json.dumps(big, separators=(",", ":")))
    batches = _batches([(big, 0)] * 30)
    assert sum(len(b) for b in batches) == 30
    assert all(len(b) <= 10 for b in batches)
    assert all(sum(len(e["MessageBody"]) for e in b) <= BATCH_BYTES for b in batches)
    assert len(batches[0]) == BATCH_BYTES // size  # as many as fit, not fewer


def test_delays_are_bounded_to_sqs_limits() -> None:
    [[late, early]] = _batches([({"a": 1}, 5000), ({"a": 2}, -4)])
    assert (late["DelaySeconds"], early["DelaySeconds"]) == (900, 0)
