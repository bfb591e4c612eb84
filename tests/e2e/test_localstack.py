"""The local stack on LocalStack (community, host mode, no Docker), set up by
:mod:`cadenza_tools.local.localstack`: `cadenza dev --localstack` starting one on demand and
stopping it with itself, the README's 10-slice job, two stacks on one LocalStack firing a
slot once, and `cadenza deploy` against LocalStack's CloudFormation.

Minutes, not seconds (LocalStack takes 25-60 s to start, its venv a few minutes to make on
first use), and it depends on LocalStack's releases: it runs when
``CADENZA_LOCALSTACK_TEST=1`` (``scripts/localstack.sh test`` sets it), in file order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
import requests
from typer.testing import CliRunner

from cadenza_tools.cli.main import app
from cadenza_tools.local.dynamodb_local import free_port, port_in_use
from cadenza_tools.local.localstack import DEPLOY_SERVICES, LocalStackServer, is_localstack
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.config import Settings
from tests.e2e import test_local_stack as local_stack_tests
from tests.e2e.test_deploy_moto import ALARMS, an_item
from tests.e2e.test_local_stack import (
    AT_JOB_OPS,
    FAST,
    REPO,
    StackProcess,
    assert_stats,
    at_slot,
    needs_java,
    stacks,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.localstack,
    needs_java,
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        os.environ.get("CADENZA_LOCALSTACK_TEST") != "1",
        reason="minutes: run by scripts/localstack.sh test (CADENZA_LOCALSTACK_TEST=1)",
    ),
]
__all__ = ["stacks"]  # the fixture, used here

README_JOB = {
    "name": "reindex",
    "workers": 3,
    "operations": [{"_op": "range", "start": 0, "end": 100, "size": 10}, {"_op": "noop"}],
}
REGION = "us-east-1"
HTTP_TIMEOUT_S = 60.0
LS = ["--localstack", "--workers", "2", *FAST]  # fewer pollers: LocalStack is heavier
LS_RUN_TIMEOUT_S = 120.0  # LocalStack's DynamoDB answers slower than DynamoDB Local alone


@pytest.fixture(autouse=True)
def patience(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stack that starts its LocalStack first is ready in one or two minutes, not 90 s;
    on a loaded machine a request through LocalStack can take more than 10 s."""
    monkeypatch.setattr(local_stack_tests, "READY_TIMEOUT_S", 300.0)
    request = requests.Session.request

    def patient(self: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        kwargs["timeout"] = max(kwargs.get("timeout") or 0, HTTP_TIMEOUT_S)
        return request(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", patient)


def test_dev_localstack_starts_one_and_stops_it_with_itself(
    stacks: Callable[..., StackProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("LOCALSTACK_HOST", f"127.0.0.1:{port}")
    endpoint = f"http://127.0.0.1:{port}"
    assert not is_localstack(endpoint)
    stack = stacks("ls-on-demand", *LS)
    info = stack.banner()
    assert info["backend"] == "localstack"
    assert (info["endpoint_url"], info["dynamodb_endpoint"]) == (endpoint, endpoint)
    assert is_localstack(endpoint)
    _, job = stack.submit(README_JOB)
    assert_stats(stack.wait_completed(job["job_id"], LS_RUN_TIMEOUT_S), 10)
    assert stack.stop() == 0, stack.tail()
    assert not port_in_use(port), "the LocalStack the stack started outlived it"


@pytest.fixture(scope="module")
def localstack() -> Iterator[LocalStackServer]:
    """One LocalStack for the rest of the module, found by `--localstack` (LOCALSTACK_HOST)."""
    with (
        LocalStackServer(free_port(), services=DEPLOY_SERVICES) as server,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setenv("LOCALSTACK_HOST", f"127.0.0.1:{server.port}")
        yield server


def test_readme_flow_on_localstack(
    localstack: LocalStackServer, stacks: Callable[..., StackProcess]
) -> None:
    stack = stacks("ls-readme", *LS, "--prefix", "e2e-ls-readme")
    assert stack.get("/v1").json()["backend"] == "localstack"
    assert stack.banner()["dynamodb_endpoint"] == localstack.endpoint
    status, job = stack.submit(README_JOB)
    assert status == 202
    done = stack.wait_completed(job["job_id"], LS_RUN_TIMEOUT_S)
    assert done["ex_id"] == job["ex_id"]
    assert_stats(done, 10)
    again = stack.http.post(f"{stack.url}/v1/jobs/{job['job_id']}/_start", timeout=10)
    assert again.status_code in (200, 202), again.text
    second = stack.wait_completed(job["job_id"], LS_RUN_TIMEOUT_S)
    assert second["ex_id"] != done["ex_id"]
    assert_stats(second, 10)
    assert stack.stop() == 0, stack.tail()
    assert localstack.running and is_localstack(localstack.endpoint)  # not the stack's to stop


def test_two_stacks_on_one_localstack_fire_a_slot_once(
    localstack: LocalStackServer, stacks: Callable[..., StackProcess]
) -> None:
    prefix = "e2e-ls-shared"
    a = stacks("ls-shared-a", *LS, "--prefix", prefix)
    b = stacks("ls-shared-b", *LS, "--prefix", prefix)
    assert b.banner()["start_queue_url"] == a.banner()["start_queue_url"]

    slot = at_slot(8)
    _, job = a.submit(
        {"name": "e2e-ls-shared", "operations": AT_JOB_OPS, "workers": 2, "schedule": {"at": slot}}
    )
    done = b.wait_completed(job["job_id"], LS_RUN_TIMEOUT_S)
    assert done["slot"] == slot
    assert_stats(done, 4)
    time.sleep(2.5)  # two more ticks of each supervisor: still one run
    settings = replace(
        Settings(region="us-east-1").with_prefix(prefix), dynamodb_endpoint=localstack.endpoint
    )
    runs = DynamoStore(settings).list_runs(job["job_id"])
    assert [(r.slot, r.ex_id, r.processed) for r in runs] == [(slot, done["ex_id"], 4)]
    assert b.stop() == 0, b.tail()
    assert a.stop() == 0, a.tail()


def _cadenza(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def _client(localstack: LocalStackServer, service: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
    )
    return session.client(service, endpoint_url=localstack.endpoint)  # type: ignore[call-overload]  # the service is a variable


def test_deploy_and_destroy_on_localstack_cloudformation(
    localstack: LocalStackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole stack is created: its Lambda functions too, with LocalStack's runtime
    executor replaced by one that runs no code (no Docker here: infra/localstack-no-code)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    target = ["--stage", "dev", "--region", REGION, "--endpoint-url", localstack.endpoint]
    printed = _cadenza("deploy", *target)
    cfn = _client(localstack, "cloudformation")
    (stack,) = cfn.describe_stacks(StackName="cadenza-dev")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert f"API: {outputs['EndpointURL']}" in printed

    lam = _client(localstack, "lambda")
    functions = lam.list_functions()["Functions"]
    assert len(functions) == 4
    for function in functions:
        state = lam.get_function(FunctionName=function["FunctionName"])["Configuration"]
        assert state["State"] == "Active", state
    assert len(lam.list_event_source_mappings()["EventSourceMappings"]) == 2
    ddb = _client(localstack, "dynamodb")
    tables = [t for t in ddb.list_tables()["TableNames"] if t.startswith("cadenza-dev-")]
    assert len(tables) == 6
    alarms = _client(localstack, "cloudwatch").describe_alarms()["MetricAlarms"]
    resources = cfn.list_stack_resources(StackName="cadenza-dev")["StackResourceSummaries"]
    declared = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in resources
        if r["ResourceType"] == "AWS::CloudWatch::Alarm"
    }
    assert set(declared) == ALARMS
    assert {a["AlarmName"] for a in alarms} == set(declared.values())
    assert {tuple(a["AlarmActions"]) for a in alarms} == {(outputs["AlertsTopicArn"],)}
    apigw = _client(localstack, "apigateway")
    (api,) = apigw.get_rest_apis()["items"]
    assert "api" in {s["stageName"] for s in apigw.get_stages(restApiId=api["id"])["item"]}
    assert "/v1/jobs" in {r["path"] for r in apigw.get_resources(restApiId=api["id"])["items"]}

    package = REPO / "infra" / "out" / "dev"
    assert "no changes" in _cadenza("deploy", *target, "--package-dir", str(package))

    gone = _cadenza("destroy", *target, "--yes", "--delete-data")
    assert "deleted AWS::DynamoDB::Table cadenza-dev-jobs" in gone
    assert not [t for t in ddb.list_tables()["TableNames"] if t.startswith("cadenza-dev-")]
    assert "deployed" in _cadenza("deploy", *target, "--package-dir", str(package))

    # destroy says what it kept, and what the stack's deletion took whatever its policy:
    # LocalStack 4.14 deleted the tables (RetainExceptOnCreate), where CloudFormation keeps them
    ddb.put_item(TableName="cadenza-dev-jobs", Item=an_item(ddb, "cadenza-dev-jobs"))
    said = _cadenza("destroy", *target, "--yes")
    left = {t for t in ddb.list_tables()["TableNames"] if t.startswith("cadenza-dev-")}
    if "cadenza-dev-jobs" in left:
        assert "kept" in said and "  AWS::DynamoDB::Table cadenza-dev-jobs" in said
        assert ddb.scan(TableName="cadenza-dev-jobs")["Count"] == 1
    else:
        assert "deleted AWS::DynamoDB::Table cadenza-dev-jobs" in said
