"""Targets run as jobs, through the routes and the workers: on moto (SQS, SNS, EventBridge,
Lambda without Docker: moto answers an Invoke without running the function's code, so what
is checked is the call and its parameters) and a local HTTP server. Each: the call made
with its parameters, the outcome recorded as the run's result, a failure retried under the
job's `max_retries` with the same idempotency key, a call outside the stage's allow-list
(or one AWS denies) reported on the run without calling and without an ARN."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from cadenza_tools import infra
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.ops.registry import SliceContext, process
from chalicelib.ops.targets.base import TargetAccess, use
from chalicelib.ports import FakeClock
from tests.aws_calls import Recorder, allowed, resolved, stack_arns, unused
from tests.clients import SignedClient
from tests.conftest import drain
from tests.target_server import TargetServer, target_server

JSON = {"Content-Type": "application/json"}
REGION = "us-east-1"
ALLOW = (
    ("http", "127.0.0.1"),
    ("lambda", "nightly-*"),
    ("sqs", "orders*"),
    ("sns", "ops-alerts"),
    ("eventbridge", "default"),
)
Calls = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def aws() -> Iterator[None]:
    """moto, with Lambda answering Invoke without Docker (no code runs)."""
    with mock_aws(config={"lambda": {"use_docker": False}}):
        yield


def _client(service: str, timeout: float) -> Any:
    """A client of moto's (the service a runtime string, as the targets' client maker has it)."""
    return boto3.client(service, region_name=REGION)  # type: ignore[call-overload]


@pytest.fixture
def calls(container: Container) -> Iterator[Calls]:
    """The AWS calls the targets make (operation, parameters), on moto's clients."""
    made: Calls = []

    def client(service: str, timeout: float) -> Any:
        c = _client(service, timeout)

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            made.append((model.name, dict(params)))

        c.meta.events.register("provide-client-params.*.*", record)
        return c

    use(TargetAccess(ALLOW, client))
    yield made
    use(None)


@pytest.fixture
def server() -> Iterator[TargetServer]:
    with target_server() as s:
        yield s


@dataclass
class Jobs:
    """Jobs submitted and run through the routes, their messages drained by the workers;
    the targets' AWS calls recorded in `calls`."""

    client: SignedClient
    container: Container
    queue: MemoryQueue
    calls: Calls

    def submit(self, operations: list[dict[str, Any]], **more: Any) -> str:
        body = json.dumps({"name": "t", "operations": operations, **more})
        r = self.client.http.post("/v1/jobs", body=body, headers=JSON)
        assert r.status_code == 201, r.body
        return str(r.json_body["job_id"])

    def start(self, job_id: str) -> str:
        r = self.client.http.post(f"/scheduled-jobs/{job_id}/runs", body="{}", headers=JSON)
        assert r.status_code == 202, r.body
        drain(self.container, self.queue)
        return str(r.json_body["id"])

    def ex(self, run_id: str) -> Any:
        return self.client.http.get(f"/v1/ex/{run_id}").json_body

    def once(self, op: dict[str, Any], **more: Any) -> Any:
        """A job of one target, run once on demand: its execution."""
        return self.ex(self.start(self.submit([op], **more)))


@pytest.fixture
def jobs(client: SignedClient, container: Container, queue: MemoryQueue, calls: Calls) -> Jobs:
    return Jobs(client, container, queue, calls)


def _ctx(ex: Any) -> SliceContext:
    return SliceContext(ex["ex_id"], ex["job_id"], 0, 1, None, slot=ex["slot"])


# ---- http ---------------------------------------------------------------------------------
def test_http_job_calls_and_records_the_answer(
    jobs: Jobs,
    server: TargetServer,
) -> None:
    op = {"_op": "http", "method": "POST", "url": server.url + "/ok", "json": {"s": "{{ slot }}"}}
    ex = jobs.once(op)
    assert ex["_status"] == "completed", ex
    assert ex["result"]["status"] == 200 and json.loads(ex["result"]["body"])["ok"] is True
    (seen,) = server.seen
    assert json.loads(seen.body) == {"s": ex["slot"]}
    assert seen.headers["Idempotency-Key"] == _ctx(ex).idempotency_key


def test_http_token_from_a_secret_is_sent_and_never_shown(
    jobs: Jobs,
    server: TargetServer,
) -> None:
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name="/cadenza/dev/hook-token", Value="tok-s3cr3t-42", Type="SecureString"
    )
    op = {
        "_op": "http",
        "url": server.url + "/echo",
        "headers": {"Authorization": "Bearer {{resolve:ssm:/cadenza/dev/hook-token}}"},
    }
    ex = jobs.once(op)
    assert ex["_status"] == "completed", ex
    assert server.seen[0].headers["Authorization"] == "Bearer tok-s3cr3t-42"
    assert json.loads(ex["result"]["body"])["Authorization"] == "Bearer ***"
    job = jobs.client.http.get(f"/v1/jobs/{ex['job_id']}").json_body
    assert "tok-s3cr3t-42" not in json.dumps([ex, job])


def test_http_failure_is_retried_by_the_job_with_the_same_key(
    jobs: Jobs,
    server: TargetServer,
) -> None:
    op = {"_op": "http", "url": server.url + "/flaky/1", "retries": 0}
    ex = jobs.once(op, max_retries=1)
    assert ex["_status"] == "completed", ex
    first, second = server.seen
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.headers["Idempotency-Key"] == _ctx(ex).idempotency_key


def test_http_failure_after_the_last_retry_fails_the_run_saying_why(
    jobs: Jobs,
    server: TargetServer,
) -> None:
    op = {"_op": "http", "url": server.url + "/status/500", "retries": 0}
    ex = jobs.once(op, max_retries=0)
    assert ex["_status"] == "failed"
    assert "status 500" in json.dumps(ex)


def test_http_as_a_processor_of_slices_has_a_key_per_slice(
    jobs: Jobs,
    server: TargetServer,
) -> None:
    ops: list[dict[str, Any]] = [
        {"_op": "range", "end": 2},
        {"_op": "http", "url": server.url + "/ok"},
    ]
    ex = jobs.ex(jobs.start(jobs.submit(ops)))
    assert ex["_status"] == "completed", ex
    keys = {s.headers["Idempotency-Key"] for s in server.seen}
    assert len(server.seen) == 2 and len(keys) == 2


# ---- sqs ----------------------------------------------------------------------------------
def test_sqs_fifo_message_with_group_and_deduplication(jobs: Jobs) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="orders.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    op = {
        "_op": "sqs",
        "queue": "orders.fifo",
        "body": {"run": "{{ run_id }}", "args": "{{ args }}"},
        "attributes": {"kind": "nightly"},
    }
    ex = jobs.once(op)
    assert ex["_status"] == "completed", ex
    key = _ctx(ex).idempotency_key
    assert ex["result"]["deduplication_id"] == key and ex["result"]["message_id"]
    (_, sent) = next(c for c in jobs.calls if c[0] == "SendMessage")
    assert sent["MessageGroupId"] == ex["job_id"] and sent["MessageDeduplicationId"] == key
    got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(got[0]["Body"]) == {"run": ex["ex_id"], "args": ""}
    assert got[0]["MessageAttributes"]["kind"]["StringValue"] == "nightly"


def test_a_queue_outside_the_allow_list_is_refused_before_calling(jobs: Jobs) -> None:
    op = {"_op": "sqs", "queue": "payroll", "body": "x"}
    ex = jobs.once(op)
    assert ex["_status"] == "failed"
    assert "sqs target 'payroll' is not allowed in this stage" in json.dumps(ex)
    assert jobs.calls == []


def test_aws_access_denied_is_said_plainly_without_an_arn(jobs: Jobs) -> None:
    class Denying:
        def get_queue_url(self, **kw: Any) -> Any:
            msg = (
                "User: arn:aws:sts::123456789012:assumed-role/cadenza-dev-slice_worker/x is "
                "not authorized to perform: sqs:getqueueurl on resource: "
                "arn:aws:sqs:us-east-1:123456789012:orders"
            )
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": msg}}, "GetQueueUrl")

    use(TargetAccess(ALLOW, lambda service, timeout: Denying()))
    ex = jobs.once({"_op": "sqs", "queue": "orders", "body": "x"})
    assert ex["_status"] == "failed"
    reason = ex["_failureReason"]
    assert "AWS denied the call (AccessDenied)" in reason
    assert "arn:" not in reason and "123456789012" not in json.dumps(ex), reason


# ---- sns ----------------------------------------------------------------------------------
def test_sns_publish_with_subject_and_attributes(jobs: Jobs) -> None:
    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="ops-alerts")["TopicArn"]
    op = {
        "_op": "sns",
        "topic": "ops-alerts",
        "message": "job {{ job_id }} ran for {{ scheduled_time }}",
        "subject": "run {{ run_id }}",
        "attributes": {"severity": "info"},
    }
    ex = jobs.once(op)
    assert ex["_status"] == "completed", ex
    assert ex["result"]["message_id"]
    (_, sent) = next(c for c in jobs.calls if c[0] == "Publish")
    assert sent["TopicArn"] == topic
    assert sent["Message"] == f"job {ex['job_id']} ran for {ex['slot'].split('#')[0]}"
    assert sent["Subject"] == f"run {ex['ex_id']}"
    assert sent["MessageAttributes"] == {"severity": {"DataType": "String", "StringValue": "info"}}
    assert topic not in json.dumps(ex)


# ---- eventbridge --------------------------------------------------------------------------
def test_eventbridge_put_events(jobs: Jobs) -> None:
    op = {
        "_op": "eventbridge",
        "source": "cadenza.jobs",
        "detail_type": "nightly",
        "detail": {"slot": "{{ slot }}", "n": 3},
    }
    ex = jobs.once(op)
    assert ex["_status"] == "completed", ex
    assert ex["result"]["event_id"]
    (_, sent) = next(c for c in jobs.calls if c[0] == "PutEvents")
    (entry,) = sent["Entries"]
    assert entry["EventBusName"] == "default" and entry["Source"] == "cadenza.jobs"
    assert json.loads(entry["Detail"]) == {"slot": ex["slot"], "n": 3}


def test_an_unknown_template_is_400_at_submit_naming_the_field(client: SignedClient) -> None:
    op = {"_op": "eventbridge", "source": "s", "detail_type": "d", "detail": {"a": "{{ env }}"}}
    r = client.http.post(
        "/v1/jobs", body=json.dumps({"name": "t", "operations": [op]}), headers=JSON
    )
    assert r.status_code == 400
    assert r.json_body["errors"][0]["field"] == "operations[0].detail"
    assert "unknown template {{ env }}" in r.json_body["errors"][0]["reason"]


# ---- lambda -------------------------------------------------------------------------------
def _function(name: str) -> None:
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="fn", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("f.py", "def handler(e, c):\n    return e\n")
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="f.handler",
        Code={"ZipFile": code.getvalue()},
    )


def test_lambda_invoke_the_call_and_its_parameters(jobs: Jobs) -> None:
    _function("nightly-report")
    op = {
        "_op": "lambda",
        "function": "nightly-report",
        "payload": {"slot": "{{ slot }}", "attempt": "{{ attempt }}"},
    }
    ex = jobs.once(op)
    assert ex["_status"] == "completed", ex
    assert ex["result"]["status"] == 200 and ex["result"]["request_id"]
    (_, sent) = next(c for c in jobs.calls if c[0] == "Invoke")
    assert sent["FunctionName"] == "nightly-report"
    assert sent["InvocationType"] == "RequestResponse"
    assert json.loads(sent["Payload"]) == {"slot": ex["slot"], "attempt": "1"}
    context = json.loads(base64.b64decode(sent["ClientContext"]))
    assert context["custom"]["idempotency_key"] == _ctx(ex).idempotency_key


def test_lambda_outside_the_allow_list_and_event_invocation(jobs: Jobs) -> None:
    _function("nightly-x")
    ex = jobs.once({"_op": "lambda", "function": "billing"})
    assert ex["_status"] == "failed" and "not allowed in this stage" in json.dumps(ex)
    op = {"_op": "lambda", "function": "nightly-x", "invocation": "Event"}
    ex = jobs.once(op)
    assert ex["_status"] == "completed", ex
    assert ex["result"]["status"] == 202


# ---- IAM ----------------------------------------------------------------------------------
def test_each_target_call_is_granted_by_the_generated_worker_policy(aws: None) -> None:
    """The workers' policy generated from an allow-list grants every call the targets make
    (sts:GetCallerIdentity, which the sns target makes once to name its topic's ARN, needs no
    grant), and each target grant it makes is needed."""
    sqs = boto3.client("sqs", region_name=REGION)
    sqs.create_queue(QueueName="orders.fifo", Attributes={"FifoQueue": "true"})
    boto3.client("sns", region_name=REGION).create_topic(Name="ops-alerts")
    _function("nightly-report")
    ops = [
        {"_op": "lambda", "function": "nightly-report"},
        {"_op": "lambda", "function": "nightly-report", "qualifier": "live"},
        {"_op": "sqs", "queue": "orders.fifo", "body": "x"},
        {"_op": "sns", "topic": "ops-alerts", "message": "m"},
        {"_op": "eventbridge", "source": "s", "detail_type": "d"},
    ]
    recorder = Recorder()
    with recorder.installed(), recorder.as_(infra.SLICE_WORKER):
        use(TargetAccess(ALLOW, _client))
        try:
            for op in ops:
                try:
                    process([op], {}, SliceContext("ex", "job", 0, 1, None, slot="s"))
                except Exception as exc:  # moto has no alias `live`: the call was made
                    assert "live" in str(exc), exc
        finally:
            use(None)
    config = json.loads(json.dumps(infra.load_chalice_config(infra.PROJECT_DIR)))
    env = config["stages"]["dev"]["environment_variables"]
    env["CADENZA_TARGETS_ALLOW"] = ",".join(f"{k}:{n}" for k, n in ALLOW)
    template = json.loads((infra.PROJECT_DIR / infra.TEMPLATE_PATH).read_text())
    arns = stack_arns(template, template["Mappings"][infra.NAMES_MAPPING]["dev"], REGION)
    policy = resolved(infra.iam_policy(config, "dev", infra.SLICE_WORKER), arns, REGION)
    made = {r for r in recorder.of(infra.SLICE_WORKER) if r.action != "sts:GetCallerIdentity"}
    assert {r.action for r in made} == {
        "lambda:InvokeFunction",
        "sqs:GetQueueUrl",
        "sqs:SendMessage",
        "sns:Publish",
        "events:PutEvents",
    }
    assert [str(r) for r in made if not allowed(policy, r)] == []
    targets = {
        (action, resource)
        for s in policy["Statement"]
        if s["Sid"].startswith("Targets")
        for action in s["Action"]
        for resource in s["Resource"]
    }
    assert len(targets) == 6
    assert [g for g in unused(policy, made) if tuple(g[:2]) in targets] == []


def test_http_slice_redelivered_after_a_lost_lease_sends_the_same_key(
    jobs: Jobs, server: TargetServer, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    """A worker calls the target, then loses its lease before recording the outcome (it
    stalled): the sweep re-sends the slice's message and the next worker calls again, with
    the same `Idempotency-Key`."""
    store = jobs.container.worker.store
    finish, lost = store.finish_slice, list[int]()

    def stalled_once(sl: Any, run: Any, outcome: Any) -> bool:
        if not lost:
            lost.append(sl.order)
            return False
        return bool(finish(sl, run, outcome))

    monkeypatch.setattr(store, "finish_slice", stalled_once)
    ops: list[dict[str, Any]] = [
        {"_op": "range", "end": 2},
        {"_op": "http", "url": server.url + "/ok"},
    ]
    run_id = jobs.start(jobs.submit(ops, lease_seconds=30, workers=2))
    assert len(server.seen) == 2 and lost == [0]
    clock.advance(31)
    jobs.container.supervisor.tick(clock.now())
    drain(jobs.container, jobs.queue)
    ex = jobs.ex(run_id)
    assert ex["_status"] == "completed", ex
    keys = [s.headers["Idempotency-Key"] for s in server.seen]
    first = SliceContext(ex["ex_id"], ex["job_id"], 0, 1, None, slot=ex["slot"]).idempotency_key
    assert len(keys) == 3 and keys.count(first) == 2


class _Answers:
    """A stand-in client answering each operation as given (what moto cannot: a function's
    error, a refused event)."""

    def __init__(self, **answers: Any) -> None:
        for name, answer in answers.items():
            setattr(self, name, lambda answer=answer, **_: answer)


def test_a_function_error_fails_the_slice_with_the_functions_error(jobs: Jobs) -> None:
    error = b'{"errorMessage": "division by zero", "errorType": "ZeroDivisionError"}'
    client = _Answers(
        invoke={"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(error)}
    )
    use(TargetAccess(ALLOW, lambda service, timeout: client))
    ex = jobs.once({"_op": "lambda", "function": "nightly-report"}, max_retries=0)
    assert ex["_status"] == "failed"
    assert "lambda 'nightly-report': function error (Unhandled)" in ex["_failureReason"]
    assert "division by zero" in ex["_failureReason"]


def test_an_event_eventbridge_refuses_fails_the_slice_saying_why(jobs: Jobs) -> None:
    refused = {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
    client = _Answers(put_events={"FailedEntryCount": 1, "Entries": [refused]})
    use(TargetAccess(ALLOW, lambda service, timeout: client))
    op = {"_op": "eventbridge", "source": "s", "detail_type": "d"}
    ex = jobs.once(op, max_retries=0)
    assert ex["_status"] == "failed"
    assert "the event was refused (InternalFailure: try again)" in ex["_failureReason"]
