"""The Queue contract over MemoryQueue and SQS (moto): the bodies the handlers read,
delays, visibility and redelivery, batches of more than ten."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.sqs import SqsQueue, ensure_queues
from chalicelib.domain.runs import StartHint
from chalicelib.ports import (
    FakeClock,
    Queue,
    SliceMessage,
    StartGroup,
    StartMessage,
    start_messages,
)
from tests.contract.records import T
from tests.fakes import MemoryQueue, Message

VISIBILITY = 4  # longer than a receive loop takes on a loaded machine (none comes back)


class Harness(Protocol):
    @property
    def queue(self) -> Queue: ...

    def receive(self, kind: str) -> list[tuple[dict[str, Any], Any]]:
        """Deliverable messages of one kind now: (body, receipt)."""

    def delete(self, kind: str, receipt: Any) -> None: ...

    def wait(self, seconds: float) -> None: ...


@dataclass
class MemoryHarness:
    clock: FakeClock = field(default_factory=lambda: FakeClock(T))
    queue: MemoryQueue = field(init=False)

    def __post_init__(self) -> None:
        self.queue = MemoryQueue(clock=self.clock, visibility_timeout=VISIBILITY)

    def receive(self, kind: str) -> list[tuple[dict[str, Any], Any]]:
        got = self.queue.receive(100)
        others = [m for m in got if m.kind != kind]
        for m in others:  # SQS has one queue per kind: leave the other kind's be
            m.visible_at, m.receives = self.clock.now(), m.receives - 1
        return [(m.body, m) for m in got if m.kind == kind]

    def delete(self, kind: str, receipt: Message) -> None:
        self.queue.delete(receipt)

    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)


@dataclass
class SqsHarness:
    client: Any
    queue: SqsQueue

    def receive(self, kind: str) -> list[tuple[dict[str, Any], Any]]:
        out: list[tuple[dict[str, Any], Any]] = []
        while True:
            resp = self.client.receive_message(
                QueueUrl=self.queue.url(kind), MaxNumberOfMessages=10
            )
            msgs = resp.get("Messages", [])
            if not msgs:
                return out
            out += [(json.loads(m["Body"]), m["ReceiptHandle"]) for m in msgs]

    def delete(self, kind: str, receipt: str) -> None:
        self.client.delete_message(QueueUrl=self.queue.url(kind), ReceiptHandle=receipt)

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture(params=["memory", "moto"])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "memory":
        yield MemoryHarness()
        return
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        ensure_queues(client, "starts", "slices", "dlq", 5)
        queue = SqsQueue(client, "starts", "slices")
        for kind in ("start", "slice"):
            client.set_queue_attributes(
                QueueUrl=queue.url(kind), Attributes={"VisibilityTimeout": str(VISIBILITY)}
            )
        yield SqsHarness(client, queue)


def _bodies(got: list[tuple[dict[str, Any], Any]]) -> list[dict[str, Any]]:
    return sorted((b for b, _ in got), key=lambda b: json.dumps(b, sort_keys=True))


def test_bodies_carry_the_key_and_the_hint(harness: Harness) -> None:
    hint = {"ex_id": "e1", "start_at": T, "lease": 60}
    harness.queue.send_starts(
        [StartMessage("j", "s1"), StartMessage("j", "s2", hint=StartHint("e1", T, 60))]
    )
    harness.queue.send_slices([SliceMessage("j", "s1", "e1", "000001")])
    assert _bodies(harness.receive("start")) == _bodies(
        [({"job_id": "j", "slot": "s1"}, None), ({"job_id": "j", "slot": "s2", **hint}, None)]
    )
    assert _bodies(harness.receive("slice")) == [
        {"job_id": "j", "slot": "s1", "ex_id": "e1", "slice_id": "000001"}
    ]


def test_a_delayed_message_is_not_deliverable_before_its_delay(harness: Harness) -> None:
    harness.queue.send_slices([SliceMessage("j", "s", "e", "000000", 1)])
    assert harness.receive("slice") == []
    harness.wait(1.5)
    assert len(harness.receive("slice")) == 1


def test_an_undeleted_message_comes_back_after_the_visibility_timeout(harness: Harness) -> None:
    harness.queue.send_starts([StartMessage("j", "kept", 0), StartMessage("j", "done", 0)])
    got = {b["slot"]: r for b, r in harness.receive("start")}
    assert set(got) == {"kept", "done"}
    harness.delete("start", got["done"])
    assert harness.receive("start") == []  # in flight
    harness.wait(VISIBILITY + 0.5)
    assert [b["slot"] for b, _ in harness.receive("start")] == ["kept"]


def test_more_than_ten_messages_are_all_sent(harness: Harness) -> None:
    harness.queue.send_starts([StartMessage("j", f"s{i:02d}") for i in range(23)])
    assert sorted(b["slot"] for b in _bodies(harness.receive("start"))) == [
        f"s{i:02d}" for i in range(23)
    ]


def test_a_bursts_group_is_one_message_holding_its_starts(harness: Harness) -> None:
    hint = StartHint("e1", T, 60)
    group = StartGroup((StartMessage("j1", "s", hint=hint), StartMessage("j2", "s")), 0)
    harness.queue.send_starts([group, StartMessage("j3", "s")])
    bodies = _bodies(harness.receive("start"))
    assert len(bodies) == 2
    starts = sorted((m for b in bodies for m in start_messages(b)), key=lambda m: m.job_id)
    assert [(m.job_id, m.hint) for m in starts] == [("j1", hint), ("j2", None), ("j3", None)]


def test_memory_drain_moves_a_fake_clock_to_each_delay() -> None:
    clock = FakeClock(T)
    queue = MemoryQueue(clock=clock)
    queue.send_starts([StartMessage("j", "later", 30), StartMessage("j", "now", 0)])
    seen: list[tuple[str, float]] = []
    assert queue.drain(lambda m: seen.append((m.body["slot"], clock.now()))) == 2
    assert seen == [("now", T), ("later", T + 30)]


def test_memory_redrive_after_max_receives() -> None:
    clock = FakeClock(T)
    queue = MemoryQueue(clock=clock, visibility_timeout=5, max_receives=2)
    queue.send_starts([StartMessage("j", "poison", 0)])

    def fail(m: Message) -> None:
        raise RuntimeError("boom")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            queue.drain(fail)
    assert queue.drain(fail) == 0  # the third receive moves it to the dead letters
    assert [m.body["slot"] for m in queue.dead] == ["poison"] and queue.messages == []
