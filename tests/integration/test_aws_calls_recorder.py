"""The recorder behind the IAM tests sees every call, whatever client makes it."""

from __future__ import annotations

import boto3

from tests.aws_calls import Recorder


def test_a_client_built_before_the_recorder_is_installed_is_recorded(aws: None) -> None:
    """PynamoDB's clients outlive a test (bindings are cached per table names; a serving
    container builds its clients when it starts): a call through one built earlier counts."""
    client = boto3.client("sqs", region_name="us-east-1")
    url = client.create_queue(QueueName="early")["QueueUrl"]
    recorder = Recorder()
    with recorder.installed(), recorder.as_("worker"):
        client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    assert {r.action for r in recorder.of("worker")} == {"sqs:GetQueueAttributes"}
    assert recorder.of("-") == set()  # the queue's creation came before: not recorded
