"""The Queue port on SQS: JSON nudges, sent in batches of ten with per-message delays."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from chalicelib.domain.slices import MAX_SQS_DELAY
from chalicelib.ports import Queue, SliceMessage, StartGroup, StartMessage


class QueueUnavailable(Exception):
    """Some messages could not be sent after a retry."""


class SqsQueue(Queue):
    """Sends start and slice nudges to their SQS queues."""

    def __init__(self, client: Any, start_queue: str, slice_queue: str) -> None:
        self.client = client
        self._names = {"start": start_queue, "slice": slice_queue}
        self._urls: dict[str, str] = {}

    def url(self, kind: str) -> str:
        if kind not in self._urls:
            self._urls[kind] = self.client.get_queue_url(QueueName=self._names[kind])["QueueUrl"]
        return self._urls[kind]

    def _send(self, kind: str, bodies: Sequence[tuple[dict[str, Any], int]]) -> None:
        url = self.url(kind)
        for entries in _batches(bodies):
            for _ in range(2):
                resp = self.client.send_message_batch(QueueUrl=url, Entries=entries)
                failed = {f["Id"] for f in resp.get("Failed", [])}
                entries = [e for e in entries if e["Id"] in failed]
                if not entries:
                    break
            if entries:
                raise QueueUnavailable(f"{len(entries)} {kind} messages not sent")

    def send_starts(self, messages: Sequence[StartMessage | StartGroup]) -> None:
        self._send("start", [(m.body(), m.delay) for m in messages])

    def send_slices(self, messages: Sequence[SliceMessage]) -> None:
        self._send("slice", [(m.body(), m.delay) for m in messages])


def ensure_queues(client: Any, start: str, slices: str, dlq: str, max_receive: int) -> None:
    """Create the queues (with a redrive policy to the DLQ) if missing."""
    dlq_url = client.create_queue(QueueName=dlq)["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)})
    for name in (start, slices):
        client.create_queue(
            QueueName=name,
            Attributes={"VisibilityTimeout": "120", "RedrivePolicy": redrive},
        )


BATCH_BYTES = 250_000  # SendMessageBatch takes 10 messages and 256 KiB in all


def _batches(bodies: Sequence[tuple[dict[str, Any], int]]) -> list[list[dict[str, Any]]]:
    """The SendMessageBatch entries for `bodies`: ten at most a call, within its size."""
    batches: list[list[dict[str, Any]]] = []
    size = 0
    for body, delay in bodies:
        text = json.dumps(body, separators=(",", ":"))
        entry = {
            "Id": uuid.uuid4().hex,
            "MessageBody": text,
            "DelaySeconds": max(0, min(MAX_SQS_DELAY, int(delay))),
        }
        if not batches or len(batches[-1]) == 10 or size + len(text) > BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += len(text)
    return batches
