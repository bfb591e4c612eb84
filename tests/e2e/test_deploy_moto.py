"""`cadenza deploy` / `cadenza destroy` end to end against moto's CloudFormation.

From a fresh copy of this checkout (its tracked and new files, nothing ignored): the real
`chalice package` (it pip-downloads Linux wheels, so it needs PyPI), the artifact bucket,
the SAM template expanded and deployed by change set into a moto server (server mode, in
this process, as `cadenza dev` runs it; :mod:`cadenza_tools.local.moto_cfn` lets moto's
CloudFormation import the REST API's body and keep retained resources), then an update (a
new function), `destroy --delete-data`, a second create over the same names, and `destroy`
keeping the data.

It takes about a minute and a half (most of it `chalice package`), over the CI suite's
budget: it runs when ``CADENZA_DEPLOY_TEST=1`` (``scripts/deploy_moto.sh`` sets it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from cadenza_tools.cli.main import app
from cadenza_tools.local import moto_cfn
from cadenza_tools.local.moto_server import MotoServer
from tests.helpers import pypi_reachable

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        os.environ.get("CADENZA_DEPLOY_TEST") != "1",
        reason="about 90 s: run by scripts/deploy_moto.sh (CADENZA_DEPLOY_TEST=1)",
    ),
]

REPO = Path(__file__).resolve().parents[2]
STAGE, STACK, REGION = "dev", "cadenza-dev", "us-east-1"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the work tree: what `git ls-files` lists, tracked or new."""
    if not pypi_reachable():
        pytest.skip("PyPI is unreachable: chalice package pip-downloads Linux wheels from it")
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    copy = tmp_path_factory.mktemp("checkout")
    for rel in filter(None, listed.split("\0")):
        source = REPO / rel
        if source.is_file():
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / rel)
    return copy


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    moto_cfn.install()
    with MotoServer() as server:
        yield server.endpoint


def _cadenza(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _deploy_printed(moto: str, checkout: Path, *extra: str) -> str:
    """What `cadenza deploy` prints without --json: the API's URL and the first steps."""
    common = ["--stage", STAGE, "--region", REGION, "--endpoint-url", moto]
    return str(_cadenza("deploy", *common, "--project-dir", str(checkout), *extra).stdout)


def _deploy(moto: str, checkout: Path, *extra: str) -> dict[str, Any]:
    common = ["--stage", STAGE, "--region", REGION, "--endpoint-url", moto, "--json"]
    result = _cadenza("deploy", *common, "--project-dir", str(checkout), *extra)
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def _destroy(moto: str, *extra: str) -> str:
    common = ["--stage", STAGE, "--region", REGION, "--endpoint-url", moto, "--yes"]
    return str(_cadenza("destroy", *common, *extra).stdout)


def _client(moto: str, service: str) -> Any:
    return boto3.session.Session(region_name=REGION).client(service, endpoint_url=moto)  # type: ignore[call-overload]  # the service is a variable


def _tables(moto: str) -> set[str]:
    names = _client(moto, "dynamodb").list_tables()["TableNames"]
    return {n for n in names if n.startswith(f"cadenza-{STAGE}-")}


def _add_function(package: Path) -> None:
    """An update: a new function (moto's CloudFormation does not apply a table's changes,
    a new GSI for instance, on update; AWS's does)."""
    sam = json.loads((package / "sam.json").read_text())
    function = json.loads(json.dumps(sam["Resources"]["Supervisor"]))
    function["Properties"]["Events"] = {}
    sam["Resources"]["Extra"] = function
    (package / "sam.json").write_text(json.dumps(sam))


def test_deploy_update_destroy(moto: str, checkout: Path) -> None:
    first = _deploy(moto, checkout)
    assert first["stack"] == STACK and first["changed"] is True
    cfn, ddb, s3 = (_client(moto, s) for s in ("cloudformation", "dynamodb", "s3"))
    assert cfn.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    tables = _tables(moto)
    assert len(tables) == 6
    for name in tables:
        assert ddb.describe_table(TableName=name)["Table"]["DeletionProtectionEnabled"] is True
    (bucket,) = [b["Name"] for b in s3.list_buckets()["Buckets"] if "-results-" in b["Name"]]
    assert bucket == f"cadenza-{STAGE}-results-123456789012-{REGION}"
    functions = {
        f["FunctionName"]: f for f in _client(moto, "lambda").list_functions()["Functions"]
    }
    assert len(functions) == 4
    mappings = _client(moto, "lambda").list_event_source_mappings()["EventSourceMappings"]
    assert len(mappings) == 2
    apis = _client(moto, "apigateway").get_rest_apis()["items"]
    assert [a["name"] for a in apis] == [f"cadenza-{STAGE}-api"]
    resources = _client(moto, "apigateway").get_resources(restApiId=apis[0]["id"])["items"]
    assert {"/jobs", "/v1/jobs"} <= {r["path"] for r in resources}
    _check_alarms_and_api(moto, first, apis[0]["id"])

    # the same package again: nothing to change; the URL printed is the API's
    package = checkout / "infra" / "out" / STAGE
    printed = _deploy_printed(moto, checkout, "--package-dir", str(package))
    assert "no changes" in printed
    assert f"API: {first['EndpointURL']}" in printed
    assert f"export CADENZA_URL={first['EndpointURL']}" in printed
    assert f"--topic-arn {first['AlertsTopicArn']}" in printed
    # an update: a new function
    _add_function(package)
    assert _deploy(moto, checkout, "--package-dir", str(package))["changed"] is True
    assert len(_client(moto, "lambda").list_functions()["Functions"]) == 5

    # destroy with the data: nothing of the stage is left, so it can be created again
    out = _destroy(moto, "--delete-data")
    assert "deleted AWS::DynamoDB::Table cadenza-dev-jobs" in out
    assert _tables(moto) == set()
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert _deploy(moto, checkout, "--package-dir", str(package))["changed"] is True

    # destroy keeps the data and says so: the records and the result files are still there
    jobs_table = f"cadenza-{STAGE}-jobs"
    ddb.put_item(TableName=jobs_table, Item=an_item(ddb, jobs_table))
    s3.put_object(Bucket=bucket, Key="results/kept.json", Body=b"{}")
    out = _destroy(moto)
    assert "kept" in out and f"AWS::S3::Bucket {bucket}" in out
    assert f"AWS::DynamoDB::Table {jobs_table}" in out
    assert len(_tables(moto)) == 6
    assert ddb.scan(TableName=jobs_table)["Count"] == 1
    assert s3.get_object(Bucket=bucket, Key="results/kept.json")["Body"].read() == b"{}"
    stacks = cfn.list_stacks(StackStatusFilter=["CREATE_COMPLETE", "UPDATE_COMPLETE"])
    assert not stacks["StackSummaries"]


def an_item(ddb: Any, table: str) -> dict[str, Any]:
    """An item with only the table's key attributes."""
    described = ddb.describe_table(TableName=table)["Table"]
    types = {a["AttributeName"]: a["AttributeType"] for a in described["AttributeDefinitions"]}
    return {k["AttributeName"]: {types[k["AttributeName"]]: "1"} for k in described["KeySchema"]}


# the alarms infra/resources.json declares, each routed to the alerts topic
ALARMS = {
    "DeadLetterAlarm",
    "SupervisorErrorsAlarm",
    "SupervisorNotInvokedAlarm",
    "StartWorkerErrorsAlarm",
    "StartWorkerThrottlesAlarm",
    "StartQueueAgeAlarm",
    "SliceWorkerErrorsAlarm",
    "SliceWorkerThrottlesAlarm",
    "SliceQueueAgeAlarm",
    "Api5xxAlarm",
    *(f"{t}TableThrottleAlarm" for t in ("Job", "Run", "Slice", "Supervisor", "Alert", "Asset")),
}


def _check_alarms_and_api(moto: str, outputs: dict[str, Any], api_id: str) -> None:
    """The alarms and the API stage as deployed. moto's CloudFormation creates no
    CloudWatch alarm and no API Gateway stage (it warns and goes on): what it was given,
    the template it keeps for the stack, is checked, and what it made."""
    cfn = _client(moto, "cloudformation")
    deployed = cfn.get_template(StackName=STACK)["TemplateBody"]
    template = deployed if isinstance(deployed, dict) else json.loads(deployed)
    resources: dict[str, Any] = template["Resources"]
    alarms = {k: r for k, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == ALARMS
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlertsTopic"}], name
    topic = outputs["AlertsTopicArn"]
    topics = {t["TopicArn"] for t in _client(moto, "sns").list_topics()["Topics"]}
    assert topic in topics and topic.endswith(f":cadenza-{STAGE}-alerts")
    made = _client(moto, "cloudwatch").describe_alarms()["MetricAlarms"]
    for alarm in made:  # none on moto 5 (see above); all of them where alarms are made
        assert alarm["AlarmActions"] == [topic], alarm["AlarmName"]

    (stage,) = [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert stage["Properties"]["StageName"] == "api"
    assert stage["Properties"]["AccessLogSetting"]["DestinationArn"] == {
        "Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]
    }
    url = outputs["EndpointURL"]
    assert url == f"https://{api_id}.execute-api.{REGION}.amazonaws.com/api/"
