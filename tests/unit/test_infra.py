"""infra/resources.json and .chalice/policy-*.json are generated from the models and
.chalice/config.json (cadenza_tools/infra.py); they must be current and agree with the models.

Names: the merge template serves every stage (chalice package --stage S --merge-template
infra/resources.json), so it takes a ``Stage`` parameter and reads each name from the
``StageNames`` mapping; the checks below resolve those references for every stage in
.chalice/config.json and compare with ``build_models(Settings.from_env(<stage env>))``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from cadenza_tools import infra
from chalicelib.adapters.dynamodb.models import build_models
from chalicelib.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CONFIG = infra.load_chalice_config(ROOT)
STAGES = infra.stages(CONFIG)


def _committed(rel: Path) -> Any:
    return json.loads((ROOT / rel).read_text())


TEMPLATE = _committed(infra.TEMPLATE_PATH)
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


def _resolve(value: Any, stage: str) -> Any:
    """Resolve the template's name references (FindInMap on the Stage parameter) for a stage."""
    if isinstance(value, dict) and set(value) == {"Fn::FindInMap"}:
        mapping, key, name = value["Fn::FindInMap"]
        assert key == {"Ref": infra.STAGE_PARAMETER}
        return TEMPLATE["Mappings"][mapping][stage][name]
    if isinstance(value, dict) and value == {"Ref": infra.STAGE_PARAMETER}:
        return stage
    return value


# ---- generated files are current ------------------------------------------------------------


def test_generated_files_are_current() -> None:
    for rel, text in infra.generated_files(ROOT).items():
        committed = (ROOT / rel).read_text() if (ROOT / rel).exists() else None
        assert committed == text, f"{rel} is stale: run `python -m cadenza_tools.infra --write`"


def test_entry_point_prints_the_template() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cadenza_tools.infra"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out == (ROOT / infra.TEMPLATE_PATH).read_text()
    check = subprocess.run(
        [sys.executable, "-m", "cadenza_tools.infra", "--check"], cwd=ROOT, timeout=60
    )
    assert check.returncode == 0


# ---- tables match the models ------------------------------------------------------------------


def _table_resources() -> dict[str, Any]:
    return {k: v for k, v in RESOURCES.items() if v.get("Type") == "AWS::DynamoDB::Table"}


def _as_set(items: Iterable[Mapping[str, object]]) -> set[tuple[tuple[str, object], ...]]:
    return {tuple(sorted(i.items())) for i in items}


@pytest.mark.parametrize("stage", STAGES)
def test_every_table_matches_its_model(stage: str) -> None:
    settings = Settings.from_env(infra.function_environment(CONFIG, stage, infra.SUPERVISOR))
    models = build_models(settings)
    tables = _table_resources()
    assert len(tables) == len(models.all)
    by_name = {_resolve(t["Properties"]["TableName"], stage): t for t in tables.values()}
    for model in models.all:
        name = model.Meta.table_name
        assert name in by_name, f"{name} ({stage}) is not in the template"
        props = by_name[name]["Properties"]
        # pynamodb's own schema (what create_table sends), compared as sets: an independent
        # path from the walk in cadenza_tools/infra.py
        schema = model._get_schema()
        assert props["BillingMode"] == "PAY_PER_REQUEST" == model.Meta.billing_mode
        assert _as_set(props["KeySchema"]) == _as_set(schema["key_schema"])
        assert props["KeySchema"][0]["KeyType"] == "HASH"
        assert _as_set(props["AttributeDefinitions"]) == _as_set(schema["attribute_definitions"])
        gsis = {g["IndexName"]: g for g in props.get("GlobalSecondaryIndexes", [])}
        expected = {g["index_name"]: g for g in schema["global_secondary_indexes"]}
        assert set(gsis) == set(expected)
        for index_name, gsi in gsis.items():
            assert _as_set(gsi["KeySchema"]) == _as_set(expected[index_name]["key_schema"])
            assert gsi["KeySchema"][0]["KeyType"] == "HASH"
            assert gsi["Projection"] == expected[index_name]["projection"]
            assert "ProvisionedThroughput" not in gsi
        lsis = {i["IndexName"]: i for i in props.get("LocalSecondaryIndexes", [])}
        expected_lsis = {i["index_name"]: i for i in schema["local_secondary_indexes"]}
        assert set(lsis) == set(expected_lsis)
        for index_name, lsi in lsis.items():
            assert _as_set(lsi["KeySchema"]) == _as_set(expected_lsis[index_name]["key_schema"])
            assert lsi["Projection"] == expected_lsis[index_name]["projection"]
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert "TimeToLiveSpecification" not in props


# ---- names, queues, bucket, topic ---------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_names_follow_the_stage_settings(stage: str) -> None:
    env = infra.function_environment(CONFIG, stage, infra.SUPERVISOR)
    settings = Settings.from_env(env)
    assert settings.stage == stage
    assert env["CADENZA_LOOKAHEAD_SECONDS"] == "60"  # one tick a minute
    # the stack owns the tables: the functions must not try to create them (and the policy
    # grants no DescribeTable/CreateTable)
    assert getattr(settings, "create_tables", False) is False
    for var in [
        "CADENZA_STAGE",
        "CADENZA_PREFIX",
        "CADENZA_JOBS_TABLE",
        "CADENZA_RUNS_TABLE",
        "CADENZA_SLICES_TABLE",
        "CADENZA_SUPERVISOR_TABLE",
        "CADENZA_START_QUEUE",
        "CADENZA_SLICE_QUEUE",
        "CADENZA_DLQ",
        "CADENZA_BUCKET",
        "CADENZA_DUE_SHARDS",
    ]:
        assert var in env, f"{stage}: {var} is not set in .chalice/config.json"
    names = {k: _resolve(v["Properties"].get("QueueName"), stage) for k, v in RESOURCES.items()}
    assert names["StartQueue"] == settings.start_queue
    assert names["SliceQueue"] == settings.slice_queue
    assert names["DeadLetterQueue"] == settings.dead_letter_queue
    bucket = RESOURCES["ResultsBucket"]["Properties"]["BucketName"]
    assert _resolve(bucket, stage) == settings.bucket
    topic = RESOURCES["AlertsTopic"]["Properties"]["TopicName"]
    assert _resolve(topic, stage) == f"{settings.prefix}-alerts"
    # every function of the stage is configured with the same names
    for function in infra.FUNCTIONS:
        other = Settings.from_env(infra.function_environment(CONFIG, stage, function))
        assert other == settings, function


@pytest.mark.parametrize("stage", STAGES)
def test_queues_redrive_and_visibility(stage: str) -> None:
    settings = infra.stage_settings(CONFIG, stage)
    for function, queue in infra.WORKER_QUEUES.items():
        props = RESOURCES[queue]["Properties"]
        timeout = infra.function_timeout(CONFIG, stage, function)
        assert int(_resolve(props["VisibilityTimeout"], stage)) >= 6 * timeout
        redrive = props["RedrivePolicy"]
        assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
        assert int(_resolve(redrive["maxReceiveCount"], stage)) == settings.max_receive_count == 5


def test_the_app_has_the_functions_the_template_patches() -> None:
    from chalice.app import ScheduledEventConfig, SQSEventConfig

    import app as app_module

    sources = app_module.app.event_sources
    sqs = {e.name for e in sources if isinstance(e, SQSEventConfig)}
    schedules = {e.name for e in sources if isinstance(e, ScheduledEventConfig)}
    assert sqs == set(infra.WORKER_QUEUES)
    assert schedules == {infra.SUPERVISOR}
    assert app_module.app.routes, "the API handler exists only if the app has routes"
    assert set(infra.FUNCTIONS) == sqs | schedules | {infra.API_HANDLER}


def test_sqs_event_sources_report_batch_item_failures() -> None:
    for function, queue in infra.WORKER_QUEUES.items():
        fn = RESOURCES[infra.cfn_name(function)]
        assert "Type" not in fn, "a patch of Chalice's function, not a resource of its own"
        event = fn["Properties"]["Events"][infra.sqs_event_source_name(function)]["Properties"]
        assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert event["Queue"] == {"Fn::Sub": f"${{{queue}.Arn}}"}


@pytest.mark.parametrize("stage", STAGES)
def test_function_environment_refs_name_what_config_names(stage: str) -> None:
    """The template points each function's name variables at its resources; for the right
    stage those resolve to exactly what .chalice/config.json says."""
    row = TEMPLATE["Mappings"][infra.NAMES_MAPPING][stage]
    env = infra.function_environment(CONFIG, stage, infra.SUPERVISOR)
    for function in infra.FUNCTIONS:
        variables = RESOURCES[infra.cfn_name(function)]["Properties"]["Environment"]["Variables"]
        assert set(variables) == {"CADENZA_STAGE", *infra.ENVIRONMENT_NAMES}
        for var, ref in variables.items():
            if var == "CADENZA_STAGE":
                assert ref == {"Ref": infra.STAGE_PARAMETER}
                continue
            if "Fn::FindInMap" in ref:
                resolved = _resolve(ref, stage)
            else:
                target = ref.get("Ref") or ref["Fn::GetAtt"][0]
                resolved = row[target]
                props = RESOURCES[target]["Properties"]
                physical = (
                    props.get("TableName")
                    or props.get("QueueName")
                    or props.get("TopicName")
                    or props["BucketName"]
                )
                assert _resolve(physical, stage) == resolved
            assert resolved == env[var], f"{stage} {function} {var}"


# ---- the IAM policy ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_policy_covers_every_table_index_and_queue(stage: str) -> None:
    policy = _committed(infra.policy_path(stage))
    settings = infra.stage_settings(CONFIG, stage)
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert all(s["Effect"] == "Allow" for s in statements.values())
    resources = " ".join(json.dumps(s["Resource"]) for s in statements.values())
    for model in build_models(settings).all:
        assert f'table/{model.Meta.table_name}"' in resources
        for index in infra.index_names(model):
            assert f"table/{model.Meta.table_name}/index/{index}" in resources
    for queue in (settings.start_queue, settings.slice_queue):
        assert f':{queue}"' in json.dumps(statements["SendNudges"]["Resource"])
        assert f':{queue}"' in json.dumps(statements["ConsumeNudges"]["Resource"])
    assert CONFIG["autogen_policy"] is False
    assert infra.function_environment(CONFIG, stage, infra.SUPERVISOR)  # the stage exists
    assert CONFIG["stages"][stage]["iam_policy_file"] == infra.policy_path(stage).name


@pytest.mark.parametrize("stage", STAGES)
def test_policy_reads_secrets_only_under_the_stage_prefix(stage: str) -> None:
    statements = {s["Sid"]: s for s in _committed(infra.policy_path(stage))["Statement"]}
    prefix = infra.stage_settings(CONFIG, stage).secrets_prefix
    assert prefix == f"/cadenza/{stage}/"
    parameters, secrets = statements["SecretParameters"], statements["Secrets"]
    assert parameters["Action"] == ["ssm:GetParameter"]
    assert parameters["Resource"] == f"arn:aws:ssm:*:*:parameter/cadenza/{stage}/*"
    assert secrets["Action"] == ["secretsmanager:GetSecretValue"]
    assert secrets["Resource"] == f"arn:aws:secretsmanager:*:*:secret:/cadenza/{stage}/*"


# API calls the functions' code makes -> the IAM action they need. The policy grants only
# what is used; a new call here without a grant fails this test rather than in AWS.
CALLS_NEEDING_GRANTS = {
    # a model's delete(); not `<Model>.active_slots.delete(...)`, a set DELETE inside an update
    r"(?<!_slots)\.delete\(": "dynamodb:DeleteItem",
    r"\.scan\(": "dynamodb:Scan",
    r"\bbatch_get\(": "dynamodb:BatchGetItem",
    r"\bbatch_write\(": "dynamodb:BatchWriteItem",
    r"\.condition_check\(": "dynamodb:ConditionCheckItem",
    r"\bTransactGet\b": "dynamodb:GetItem",
    r"\.change_message_visibility(_batch)?\(": "sqs:ChangeMessageVisibility",
    r"\.delete_message(_batch)?\(": "sqs:DeleteMessage",
    r"\.receive_message\(": "sqs:ReceiveMessage",
    r"\.(put_object|upload_file|upload_fileobj)\(": "s3:PutObject",
    r"\.(get_object|download_file|download_fileobj)\(": "s3:GetObject",
    r"\.delete_objects?\(": "s3:DeleteObject",
    r"\.list_objects(_v2)?\(": "s3:ListBucket",
    r"\.publish(_batch)?\(": "sns:Publish",
    r"\.create_topic\(": "sns:CreateTopic",
    r"\bSSMProvider\(|\.get_parameter\(": "ssm:GetParameter",
    r"\bSecretsProvider\(|\.get_secret_value\(": "secretsmanager:GetSecretValue",
}


def test_policy_grants_what_the_code_calls() -> None:
    granted = {
        a for s in _committed(infra.policy_path(STAGES[0]))["Statement"] for a in s["Action"]
    }
    needed: dict[str, list[str]] = {}
    for path in sorted((ROOT / "chalicelib").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        for pattern, action in CALLS_NEEDING_GRANTS.items():
            if re.search(pattern, text):
                needed.setdefault(action, []).append(rel)
    missing = {a: files for a, files in needed.items() if a not in granted}
    assert not missing, f"grant these in cadenza_tools/infra.py: {missing}"


def test_api_gateway_refusals_answer_in_the_api_error_shape() -> None:
    template = _committed(infra.TEMPLATE_PATH)
    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    responses = body["x-amazon-apigateway-gateway-responses"]
    for kind in ("MISSING_AUTHENTICATION_TOKEN", "INVALID_SIGNATURE", "ACCESS_DENIED"):
        assert responses[kind]["statusCode"] == 403
    for kind, response in responses.items():
        text = response["responseTemplates"]["application/json"]
        rendered = json.loads(
            text.replace("$context.error.messageString", '"Missing Authentication Token"').replace(
                "$context.requestId", "r-1"
            )
        )
        assert set(rendered) == {"error", "message", "request_id"}, kind
        assert rendered["message"] == "Missing Authentication Token"
    assert (
        json.loads(
            responses["ACCESS_DENIED"]["responseTemplates"]["application/json"]
            .replace("$context.error.messageString", '"x"')
            .replace("$context.requestId", "r")
        )["error"]
        == "forbidden"
    )
