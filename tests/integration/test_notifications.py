"""Notifications end to end on moto (docs/notifications.md): `notify` checked at submit and
shown on the job; each event recorded once per run across a redelivered message and a
retried finalize, nothing for `failed` until the last retry; a webhook that fails twice then
succeeds gets exactly one delivery, signed; SNS publishes; failures kept and listed."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.notifications import (
    ID_HEADER,
    MAX_ATTEMPTS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import FakeClock
from tests.clients import ADMIN, SignedClient
from tests.conftest import drain, moto_container
from tests.conftest import test_settings as settings_for
from tests.helpers import deliver
from tests.webhook import Hook

JSON = {"Content-Type": "application/json"}
SECRET_NAME = "/cadenza/dev/hook-key"
SECRET_VALUE = "whsec-0123456789"
SECRET_REF = "{{resolve:ssm:" + SECRET_NAME + "}}"
TOPIC = "cadenza-test-ops"


@pytest.fixture
def container(clock: FakeClock, queue: MemoryQueue) -> Iterator[Container]:
    """A moto container whose stage allows one topic (its ARN) and holds the hook's key."""
    with mock_aws():
        arn = boto3.client("sns", region_name="us-east-1").create_topic(Name=TOPIC)["TopicArn"]
        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name=SECRET_NAME, Value=SECRET_VALUE, Type="SecureString"
        )
        yield from moto_container(settings_for(notify_topics=(arn,)), clock, queue)


def _hook_dest(url: str) -> dict[str, Any]:
    return {"type": "webhook", "url": url, "secret": SECRET_REF}


def _submit(client: SignedClient, notify: dict[str, Any], **kw: Any) -> Any:
    body = {"name": "n", "operations": [{"_op": "noop"}], "notify": notify, **kw}
    return client.http.post("/v1/jobs?start=true", body=json.dumps(body), headers=JSON)


def _notes(c: Container, status: str = "pending") -> list[Any]:
    assert c.notifications is not None
    return c.notifications.listing(status)


def test_notify_is_checked_at_submit_and_shown_on_the_job(client: SignedClient) -> None:
    bad = [
        (
            {"events": ["failed"], "destinations": [_hook_dest("http://h/x") | {"secret": "pw"}]},
            "notify.destinations[0].secret",
        ),
        (
            {"events": ["failed"], "destinations": [{"type": "sns", "topic": "elsewhere"}]},
            "notify.destinations[0].topic",
        ),
        ({"events": ["late"], "destinations": [{"type": "sns", "topic": TOPIC}]}, "notify"),
        (
            {"events": ["nope"], "destinations": [{"type": "sns", "topic": TOPIC}]},
            "notify.events.0",
        ),
    ]
    for notify, field in bad:
        r = _submit(client, notify)
        assert r.status_code == 400, r.json_body
        assert r.json_body["errors"][0]["field"] == field, r.json_body
        assert "pw" not in json.dumps(r.json_body["errors"])
    notify = {
        "events": ["late", "failed"],
        "late_seconds": 30,
        "destinations": [{"type": "email", "topic": TOPIC}],
    }
    r = _submit(client, notify)
    assert r.status_code == 202, r.json_body
    shown = client.http.get(f"/v1/jobs/{r.json_body['job_id']}").json_body
    assert shown["notify"] == notify


def test_failed_once_after_the_last_retry_and_a_webhook_failing_twice_gets_one_delivery(
    client: SignedClient, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    hook = Hook([500, 503])
    try:
        notify = {"events": ["failed", "succeeded"], "destinations": [_hook_dest(hook.url)]}
        r = _submit(client, notify, operations=[{"_op": "noop"}, {"_op": "fail"}], max_retries=1)
        assert r.status_code == 202, r.json_body
        job_id, ex_id = r.json_body["job_id"], r.json_body["ex_id"]
        first = queue.take()[0]
        deliver(container, first)  # the first attempt fails: a retry is due, nothing told
        run = client.http.get(f"/v1/ex/{ex_id}").json_body
        assert run["_status"] != "failed" and _notes(container) == []
        drain(container, queue)  # the last attempt fails: the run is failed
        assert client.http.get(f"/v1/ex/{ex_id}").json_body["_status"] == "failed"
        assert [(n.event, n.ex_id) for n in _notes(container)] == [("failed", ex_id)]

        deliver(container, first)  # a redelivered start message
        stored = container.store.get_run_by_ex(ex_id)
        assert stored is not None and stored.status == ExStatus.failed
        assert container.notifications is not None  # a retried finalize: its event again
        container.notifications.run_ended(replace(stored, status=ExStatus.running), stored, 0.0)
        assert len(_notes(container)) == 1

        for _ in range(4):  # 500, 503, then 200; then nothing left to send
            container.supervisor.tick(clock.now())
            clock.advance(130)
        assert [status for _, _, status in hook.requests] == [500, 503, 200]
        headers, body, _ = hook.accepted()[0]
        stamp = headers[TIMESTAMP_HEADER]
        mac = hmac.new(SECRET_VALUE.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        assert headers[SIGNATURE_HEADER] == "sha256=" + mac.hexdigest()
        assert len({h[ID_HEADER] for h, _, _ in hook.requests}) == 1
        sent = json.loads(body)
        assert (sent["event"], sent["ex_id"], sent["job_id"]) == ("failed", ex_id, job_id)
        assert sent["link"] == f"/v1/ex/{ex_id}"
        assert "fail" in sent["detail"]["error"]  # the run's last error
        assert SECRET_VALUE not in body.decode()
        done = _notes(container, "delivered")
        assert [(n.event, n.attempts) for n in done] == [("failed", 3)]
        assert _notes(container) == []
    finally:
        hook.close()


def test_sns_topic_by_name_gets_the_succeeded_event(
    client: SignedClient, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    sns, sqs = (
        boto3.client("sns", region_name="us-east-1"),
        boto3.client("sqs", region_name="us-east-1"),
    )
    arn = container.settings.notify_topics[0]
    url = sqs.create_queue(QueueName="watch")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn)
    r = _submit(
        client, {"events": ["succeeded"], "destinations": [{"type": "sns", "topic": TOPIC}]}
    )
    ex_id = r.json_body["ex_id"]
    drain(container, queue)
    stats = container.supervisor.tick(clock.now())
    assert stats.notified == 1
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(got) == 1
    message = json.loads(json.loads(got[0]["Body"])["Message"])
    assert (message["event"], message["link"]) == ("succeeded", f"/v1/ex/{ex_id}")
    container.supervisor.tick(clock.now() + 300)
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)


def test_a_webhook_that_keeps_failing_is_kept_as_failed_and_listed(
    client: SignedClient, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    hook = Hook([500] * 20)
    try:
        r = _submit(client, {"events": ["succeeded"], "destinations": [_hook_dest(hook.url)]})
        drain(container, queue)
        for _ in range(MAX_ATTEMPTS + 2):
            container.supervisor.tick(clock.now())
            clock.advance(1000)
        assert len(hook.requests) == MAX_ATTEMPTS
        failed = client.as_(ADMIN).http.get("/v1/notifications?status=failed").json_body
        assert [(f["event"], f["ex_id"], f["attempts"], f["last_error"]) for f in failed] == [
            ("succeeded", r.json_body["ex_id"], MAX_ATTEMPTS, "webhook answered 500")
        ]
        assert failed[0]["link"] == f"/v1/ex/{r.json_body['ex_id']}"
        assert client.http.get("/v1/notifications").status_code == 403
        bad = client.as_(ADMIN).http.get("/v1/notifications?status=lost")
        assert bad.status_code == 400 and bad.json_body["errors"][0]["field"] == "status"
    finally:
        hook.close()
