"""Alerts go to the topic whose ARN the stack gives (the template on AWS, `ensure_resources`
locally); the notifier never creates a topic."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib.adapters.sns import SnsNotifier
from chalicelib.bootstrap import aws_client, build_container, ensure_resources
from chalicelib.config import Settings
from chalicelib.ports import Alert
from tests.conftest import test_settings as make_settings

ALERT = Alert(alert_id="a1", created=1.0, reason="timed out", job_id="j", ex_id="e")


@pytest.fixture
def made(aws: None) -> Iterator[Settings]:
    yield ensure_resources(make_settings())


def _subscribed_queue(topic_arn: str) -> tuple[Any, str]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="alerts-seen")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    boto3.client("sns", region_name="us-east-1").subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=arn["QueueArn"]
    )
    return sqs, url


def test_the_stack_gives_the_topics_arn_and_alerts_reach_it(made: Settings) -> None:
    arn = made.alerts_topic_arn
    assert arn and arn.endswith(f":{made.alerts_topic}")
    sqs, url = _subscribed_queue(arn)
    build_container(made).notifier.publish(ALERT)
    [message] = sqs.receive_message(QueueUrl=url)["Messages"]
    assert json.loads(json.loads(message["Body"])["Message"])["alert_id"] == "a1"


def test_without_an_arn_an_alert_is_kept_not_published(
    made: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    client = aws_client("sns", made)
    topics = client.list_topics()["Topics"]
    with caplog.at_level(logging.WARNING):
        SnsNotifier(client, None).publish(ALERT)
    assert "CADENZA_ALERTS_TOPIC_ARN" in caplog.text
    assert client.list_topics()["Topics"] == topics  # nothing created
