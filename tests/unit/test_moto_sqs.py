"""The local stack's faster moto SQS keeps moto's semantics: delay, visibility, receive
count, redrive to the DLQ, retention, deletes and the approximate counts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.sqs.models import sqs_backends

from cadenza_tools.local import moto_sqs


@pytest.fixture
def sqs() -> Iterator[Any]:
    moto_sqs.install()
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def counts(sqs: Any, url: str) -> tuple[int, int, int]:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return (
        int(a["ApproximateNumberOfMessages"]),
        int(a["ApproximateNumberOfMessagesDelayed"]),
        int(a["ApproximateNumberOfMessagesNotVisible"]),
    )


def test_installed_is_idempotent() -> None:
    moto_sqs.install()
    moto_sqs.install()
    assert moto_sqs.installed()


def test_delay_visibility_counts_and_deletes(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="now")
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=2)
    assert counts(sqs, url) == (1, 1, 0)
    [got] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert got["Body"] == "now"
    assert counts(sqs, url) == (0, 1, 1)
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
    began = time.monotonic()
    bodies: list[tuple[str, str]] = []
    while len(bodies) < 2 and time.monotonic() - began < 10:
        r = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=3, AttributeNames=["All"]
        )
        bodies += [(m["Body"], m["Attributes"]["ApproximateReceiveCount"]) for m in r["Messages"]]
        handles = [m["ReceiptHandle"] for m in r["Messages"]]
    # "now" came back after its visibility timeout (a second receive), "later" after its delay
    assert sorted(bodies) == [("later", "1"), ("now", "2")] and time.monotonic() - began >= 1
    with pytest.raises(ClientError, match="ReceiptHandleIsInvalid"):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
    entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
    assert len(sqs.delete_message_batch(QueueUrl=url, Entries=entries)["Successful"]) == 1
    sqs.delete_message(QueueUrl=url, ReceiptHandle=handles[0])  # again: still fine
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got["ReceiptHandle"])  # an older handle
    assert counts(sqs, url) == (0, 0, 0)


def test_redrive_to_the_dead_letter_queue(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]
    policy = {"deadLetterTargetArn": arn["QueueArn"], "maxReceiveCount": 1}
    url = sqs.create_queue(
        QueueName="src",
        Attributes={"VisibilityTimeout": "0", "RedrivePolicy": json.dumps(policy)},
    )["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    assert len(sqs.receive_message(QueueUrl=url)["Messages"]) == 1
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    [dead] = sqs.receive_message(QueueUrl=dlq)["Messages"]
    assert dead["Body"] == "poison"


def test_retention_period_expires_messages(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="r", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="old")
    sqs.send_message(QueueUrl=url, MessageBody="new")
    queue = sqs_backends["123456789012"]["us-east-1"].get_queue("r")
    old = next(m for m in queue._messages if m.body == "old")
    # moto declares sent_timestamp None until the message is sent (it is an int here)
    old.sent_timestamp -= 61_000  # type: ignore[operator,assignment]
    # as in moto: a receive that meets an expired message stops there, and the next goes on
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
    r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    assert [m["Body"] for m in r["Messages"]] == ["new"]
