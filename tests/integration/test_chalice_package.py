"""`chalice package --merge-template infra/resources.json` builds a deployable SAM template.

Runs the real `chalice package` (it pip-downloads Linux wheels for requirements.txt, so it
needs PyPI; skipped with that reason if PyPI cannot be reached) on a copy of the project,
for every stage, and checks the result: the tables, queues, bucket and topic from the merge
template, the SQS event sources with ReportBatchItemFailures, the one-minute schedule, the
functions' settings and environment, a deployment package with the runtime dependencies,
and references that all resolve (cfn-lint, when installed, lints the SAM template too).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cadenza_tools import infra
from tests.helpers import pypi_reachable

ROOT = Path(__file__).resolve().parents[2]
CONFIG = infra.load_chalice_config(ROOT)
STAGES = infra.stages(CONFIG)
PSEUDO = {
    "AWS::AccountId",
    "AWS::NoValue",
    "AWS::NotificationARNs",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
}


def _chalice() -> list[str]:
    script = Path(sys.executable).parent / "chalice"
    return [str(script) if script.exists() else "chalice"]


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """stage -> the `chalice package` output directory, from a copy of the project (so the
    run neither writes .chalice/deployments in the work tree nor sees its caches)."""
    if not pypi_reachable():
        pytest.skip("PyPI is unreachable: chalice package pip-downloads Linux wheels from it")
    project = tmp_path_factory.mktemp("cadenza")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copy2(ROOT / "app.py", project / "app.py")
    shutil.copy2(ROOT / "requirements.txt", project / "requirements.txt")
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=ignore)
    (project / ".chalice").mkdir()
    for path in (ROOT / ".chalice").glob("*.json"):
        shutil.copy2(path, project / ".chalice" / path.name)
    (project / "infra").mkdir()
    shutil.copy2(ROOT / infra.TEMPLATE_PATH, project / infra.TEMPLATE_PATH)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CADENZA_", "AWS_ENDPOINT"))}
    env["AWS_DEFAULT_REGION"] = "us-east-1"  # chalice package insists on a region
    merge = ["--merge-template", "infra/resources.json"]
    out: dict[str, Path] = {}
    for stage in STAGES:
        target = project / "out" / stage
        proc = subprocess.run(
            [*_chalice(), "package", "--stage", stage, *merge, str(target)],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out[stage] = target
    yield out


def _sam(packaged: dict[str, Path], stage: str) -> dict[str, Any]:
    sam: dict[str, Any] = json.loads((packaged[stage] / "sam.json").read_text())
    return sam


def _row(sam: dict[str, Any], stage: str) -> dict[str, str]:
    row: dict[str, str] = sam["Mappings"][infra.NAMES_MAPPING][stage]
    return row


@pytest.mark.parametrize("stage", STAGES)
def test_resources(packaged: dict[str, Path], stage: str) -> None:
    sam = _sam(packaged, stage)
    res = sam["Resources"]
    types: dict[str, list[str]] = {}
    for name, resource in res.items():
        assert "Type" in resource, f"{name}: a merge patch that matched no Chalice resource"
        types.setdefault(resource["Type"], []).append(name)
    assert sorted(types["AWS::DynamoDB::Table"]) == sorted(
        infra.table_logical_name(f) for f in infra.model_fields()
    )
    assert sorted(types["AWS::SQS::Queue"]) == ["DeadLetterQueue", "SliceQueue", "StartQueue"]
    assert types["AWS::S3::Bucket"] == ["ResultsBucket"]
    assert types["AWS::SNS::Topic"] == ["AlertsTopic"]
    assert sorted(types["AWS::Serverless::Function"]) == sorted(
        infra.cfn_name(f) for f in infra.FUNCTIONS
    )
    assert sam["Parameters"][infra.STAGE_PARAMETER]["AllowedValues"] == STAGES
    settings = infra.stage_settings(CONFIG, stage)
    row = _row(sam, stage)
    assert row["JobTable"] == settings.jobs_table
    assert row["StartQueue"] == settings.start_queue
    assert row["SliceQueue"] == settings.slice_queue
    assert row["DeadLetterQueue"] == settings.dead_letter_queue


@pytest.mark.parametrize("stage", STAGES)
def test_sqs_event_sources_report_batch_item_failures(
    packaged: dict[str, Path], stage: str
) -> None:
    res = _sam(packaged, stage)["Resources"]
    for function, queue in infra.WORKER_QUEUES.items():
        events = res[infra.cfn_name(function)]["Properties"]["Events"]
        assert list(events) == [infra.sqs_event_source_name(function)]
        event = events[infra.sqs_event_source_name(function)]
        assert event["Type"] == "SQS"
        props = event["Properties"]
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert props["Queue"] == {"Fn::Sub": f"${{{queue}.Arn}}"}
        assert props["BatchSize"] == 10


@pytest.mark.parametrize("stage", STAGES)
def test_supervisor_runs_every_minute(packaged: dict[str, Path], stage: str) -> None:
    events = _sam(packaged, stage)["Resources"]["Supervisor"]["Properties"]["Events"]
    (event,) = events.values()
    assert event == {"Type": "Schedule", "Properties": {"Schedule": "rate(1 minute)"}}


def _role(function: str) -> str:
    """Chalice's role per function (autogen_policy false); only the function is renamed
    APIHandler, its role keeps the plain CamelCase name."""
    return f"{function}_role".title().replace("_", "")


@pytest.mark.parametrize("stage", STAGES)
def test_functions_settings_and_environment(packaged: dict[str, Path], stage: str) -> None:
    sam = _sam(packaged, stage)
    res = sam["Resources"]
    for function in infra.FUNCTIONS:
        props = res[infra.cfn_name(function)]["Properties"]
        scoped = infra._chalice_config(CONFIG, stage, function)
        assert props["Timeout"] == scoped.lambda_timeout
        assert props["MemorySize"] == scoped.lambda_memory_size
        assert props["Runtime"].startswith("python3.")
        assert props["Role"] == {"Fn::GetAtt": [_role(function), "Arn"]}
        variables = props["Environment"]["Variables"]
        for var, value in infra.function_environment(CONFIG, stage, function).items():
            if var in infra.ENVIRONMENT_NAMES or var == "CADENZA_STAGE":
                assert isinstance(variables[var], dict), f"{var}: a reference to the resource"
            else:
                assert variables[var] == value, var
        assert variables["CADENZA_LOOKAHEAD_SECONDS"] == "60"
    # each function's role carries its own generated policy file
    for function in infra.FUNCTIONS:
        policy = json.loads((ROOT / infra.policy_path(stage, function)).read_text())
        role = res[_role(function)]["Properties"]
        assert role["Policies"][0]["PolicyDocument"] == policy
    assert len({_role(f) for f in infra.FUNCTIONS}) == len(infra.FUNCTIONS)
    throttle = res["RestAPI"]["Properties"]["MethodSettings"][0]
    assert set(throttle) >= {"ThrottlingRateLimit", "ThrottlingBurstLimit"}
    assert variables[infra.TOPIC_ARN_VARIABLE] == {"Ref": "AlertsTopic"}


def test_deployment_package(packaged: dict[str, Path]) -> None:
    with zipfile.ZipFile(packaged[STAGES[-1]] / "deployment.zip") as z:
        tops = {n.split("/", 1)[0] for n in z.namelist()}
        names = set(z.namelist())
    assert {"app.py", "chalice", "chalicelib"} <= tops
    assert {"chalice/app.py", "chalice/__init__.py", "chalicelib/entrypoints/handlers.py"} <= names
    assert (
        "chalicelib/entrypoints/http/openapi.json" in names
    )  # data files under chalicelib ship too
    for needed in ("pynamodb", "pydantic", "pydantic_core", "cronsim", "tzdata"):
        assert needed in tops, needed
    assert "aws_lambda_powertools" in tops
    assert not any(n.startswith(("chalicelib/cli/", "chalicelib/local/")) for n in names)
    assert "chalicelib/infra.py" not in names
    for not_shipped in (
        "cadenza_tools",  # the CLI, the local stack, the infra generator
        "moto",
        "typer",
        "rich",
        "requests",
        "localstack_client",
        "flask",
    ):
        assert not_shipped not in tops, not_shipped
    # the compiled part, a Linux wheel for Lambda's Python
    cores = [n for n in names if n.startswith("pydantic_core/_pydantic_core") and ".so" in n]
    assert len(cores) == 1 and "linux" in cores[0], cores


def _references(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                target = value[0] if isinstance(value, list) else value.split(".")[0]
                found.add(target)
            elif key == "Fn::Sub":
                text, local = (value, {}) if isinstance(value, str) else (value[0], value[1])
                for var in re.findall(r"\$\{([^!}][^}]*)\}", text):
                    if var not in local:
                        found.add(var.split(".")[0])
                _references(local, found)
                continue
            _references(value, found)
    elif isinstance(node, list):
        for item in node:
            _references(item, found)


@pytest.mark.parametrize("stage", STAGES)
def test_every_reference_resolves(packaged: dict[str, Path], stage: str) -> None:
    """Catches merge patches and Chalice names that point nowhere (aws/chalice#2079)."""
    sam = _sam(packaged, stage)
    defined = set(sam["Resources"]) | set(sam.get("Parameters", {})) | PSEUDO
    found: set[str] = set()
    _references(sam["Resources"], found)
    _references(sam.get("Outputs", {}), found)
    for resource in sam["Resources"].values():
        depends = resource.get("DependsOn", [])
        found.update([depends] if isinstance(depends, str) else depends)
    assert not found - defined


def test_cfn_lint(packaged: dict[str, Path]) -> None:
    pytest.importorskip("cfnlint", reason="cfn-lint is not installed")
    script = Path(sys.executable).parent / "cfn-lint"
    cmd = [str(script)] if script.exists() else ["cfn-lint"]
    templates = [str(packaged[s] / "sam.json") for s in STAGES]
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1")
    proc = subprocess.run([*cmd, *templates], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
