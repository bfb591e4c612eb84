"""infra/resources.json and .chalice/policy-*.json are generated from the models and
.chalice/config.json (cadenza_tools/infra.py); they must be current and agree with the models.

Names: the merge template serves every stage (chalice package --stage S --merge-template
infra/resources.json), so it takes a ``Stage`` parameter and reads each name from the
``StageNames`` mapping; the checks below resolve those references for every stage in
.chalice/config.json and compare with ``build_models(Settings.from_env(<stage env>))``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from pynamodb.attributes import TTLAttribute

from cadenza_tools import infra
from chalicelib.adapters.dynamodb.models import build_models
from chalicelib.config import Settings
from tests.aws_calls import ACCOUNT, resolved, stack_arns

ROOT = Path(__file__).resolve().parents[2]
CONFIG = infra.load_chalice_config(ROOT)
STAGES = infra.stages(CONFIG)
REGION = "eu-west-1"


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
    if isinstance(value, dict) and value == infra.bucket_name():
        # the stage's base name; the account and region follow it (test_bucket_is_durable)
        return _resolve(value["Fn::Sub"][1]["Base"], stage)
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
        ttl = next(
            (a for a in model.get_attributes().values() if isinstance(a, TTLAttribute)), None
        )
        if ttl is None:
            assert "TimeToLiveSpecification" not in props
        else:  # retention: finished runs, slices, ledger records and alerts expire
            spec = {"AttributeName": ttl.attr_name, "Enabled": True}
            assert props["TimeToLiveSpecification"] == spec
    ttls = {
        m.Meta.table_name
        for m in models.all
        if any(isinstance(a, TTLAttribute) for a in m.get_attributes().values())
    }
    assert ttls == {settings.runs_table, settings.slices_table, settings.alerts_table}


@pytest.mark.parametrize("stage", STAGES)
def test_the_bucket_expires_result_files_and_logs_after_the_history_days(stage: str) -> None:
    settings = infra.stage_settings(CONFIG, stage)
    rules = RESOURCES["ResultsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = {r["Prefix"]: r for r in rules if "ExpirationInDays" in r}
    assert set(expiring) == {"results/", "logs/"}  # never assets/: a job's code
    for rule in expiring.values():
        assert rule["Status"] == "Enabled"
        assert int(_resolve(rule["ExpirationInDays"], stage)) == settings.history_days
    assert any("AbortIncompleteMultipartUpload" in r for r in rules)


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
        assert set(variables) == {
            "CADENZA_STAGE",
            infra.TOPIC_ARN_VARIABLE,
            *infra.ENVIRONMENT_NAMES,
        }
        for var, ref in variables.items():
            if var == infra.TOPIC_ARN_VARIABLE:
                continue  # an ARN: account and region are the stack's (see the test below)
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


# ---- the IAM policies: one role per function ---------------------------------------------------


def _policy(stage: str, function: str) -> Any:
    """The committed policy, its references resolved for the stack of `stage` (the template's
    StageNames), as CloudFormation would."""
    names = TEMPLATE["Mappings"][infra.NAMES_MAPPING][stage]
    arns = stack_arns(TEMPLATE, names, REGION)
    return resolved(_committed(infra.policy_path(stage, function)), arns, REGION)


@pytest.mark.parametrize("stage", STAGES)
def test_each_function_has_its_own_policy_file(stage: str) -> None:
    assert CONFIG["autogen_policy"] is False
    assert "iam_policy_file" not in CONFIG["stages"][stage]  # no stage-wide role to fall back to
    functions = CONFIG["stages"][stage]["lambda_functions"]
    files = {functions[f]["iam_policy_file"] for f in infra.FUNCTIONS}
    assert len(files) == len(infra.FUNCTIONS)
    for function in infra.FUNCTIONS:
        assert functions[function]["iam_policy_file"] == infra.function_policy_file(stage, function)
        assert (ROOT / infra.policy_path(stage, function)).exists()


@pytest.mark.parametrize("stage", STAGES)
def test_policy_reads_secrets_only_under_the_stage_prefix(stage: str) -> None:
    prefix = infra.stage_settings(CONFIG, stage).secrets_prefix
    assert prefix == f"/cadenza/{stage}/"
    for function in infra.FUNCTIONS:
        statements = {s["Sid"]: s for s in _policy(stage, function)["Statement"]}
        # the workers for jobs' ops, the API for a command's secrets handed to its agent,
        # the supervisor for webhooks' signing secrets
        if function not in (
            infra.START_WORKER,
            infra.SLICE_WORKER,
            infra.API_HANDLER,
            infra.SUPERVISOR,
        ):
            assert "SecretParameters" not in statements and "Secrets" not in statements
            continue
        parameters, secrets = statements["SecretParameters"], statements["Secrets"]
        assert parameters["Action"] == ["ssm:GetParameter"]
        assert parameters["Resource"] == (
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/cadenza/{stage}/*"
        )
        assert secrets["Action"] == ["secretsmanager:GetSecretValue"]
        assert secrets["Resource"] == (
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:/cadenza/{stage}/*"
        )


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


@pytest.mark.parametrize("function", infra.FUNCTIONS)
@pytest.mark.parametrize("stage", STAGES)
def test_policies_name_only_the_stacks_resources(stage: str, function: str) -> None:
    """Every resource is a reference to one of the stack's tables (and their indexes),
    queues, bucket (prefixes of it) or topic, which resolves to the stage's names; the logs
    are the stack's region's and account's; nothing creates or describes; the notifier does
    not create a topic."""
    settings = infra.stage_settings(CONFIG, stage)
    names = [m.Meta.table_name for m in build_models(settings).all]
    ours = (
        *(f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{n}" for n in names),
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:{settings.start_queue}",
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:{settings.slice_queue}",
        f"arn:aws:s3:::{settings.bucket}",
        f"arn:aws:sns:{REGION}:{ACCOUNT}:{settings.prefix}-alerts",
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{settings.secrets_prefix}",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{settings.secrets_prefix}",
    )
    for statement in _policy(stage, function)["Statement"]:
        assert statement["Effect"] == "Allow"
        resources = statement["Resource"]
        if statement["Sid"] == "Logs":
            assert resources == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/*"
            continue
        for resource in [resources] if isinstance(resources, str) else resources:
            assert resource.startswith(ours), resource
            assert not resource.endswith(("table/*", ":*")), resource
        for action in statement["Action"]:
            assert "*" not in action
            assert not action.split(":")[1].startswith(("Create", "Describe", "Scan")), action
    raw = json.dumps(_committed(infra.policy_path(stage, function)))
    assert "arn:aws:" not in raw  # no name written out: references to the stack's resources


@pytest.mark.parametrize("stage", STAGES)
def test_only_the_supervisor_and_api_publish_and_only_the_api_lists_or_deletes(stage: str) -> None:
    def actions(function: str) -> set[str]:
        return {a for s in _policy(stage, function)["Statement"] for a in s["Action"]}

    granted = {f: actions(f) for f in infra.FUNCTIONS}
    # the API: remote agents' alerts (a task killed or reclaimed, a report refused)
    publishers = {infra.SUPERVISOR, infra.API_HANDLER}
    assert {f for f, a in granted.items() if "sns:Publish" in a} == publishers
    assert not any("sns:CreateTopic" in a for a in granted.values())
    assert {f for f, a in granted.items() if "s3:ListBucket" in a} == {infra.API_HANDLER}
    assert {f for f, a in granted.items() if "s3:DeleteObject" in a} == {infra.API_HANDLER}
    for function, queue in infra.WORKER_QUEUES.items():
        consume = [s for s in _policy(stage, function)["Statement"] if s["Sid"] == "ConsumeNudges"]
        name = _resolve(RESOURCES[queue]["Properties"]["QueueName"], stage)
        assert [s["Resource"] for s in consume] == [f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"]


def test_the_functions_get_the_topics_arn_from_the_template() -> None:
    for function in infra.FUNCTIONS:
        variables = RESOURCES[infra.cfn_name(function)]["Properties"]["Environment"]["Variables"]
        assert variables[infra.TOPIC_ARN_VARIABLE] == {"Ref": "AlertsTopic"}
    assert Settings.from_env({infra.TOPIC_ARN_VARIABLE: "arn:x"}).alerts_topic_arn == "arn:x"


@pytest.mark.parametrize("stage", STAGES)
def test_api_throttling_follows_the_stage(stage: str) -> None:
    [method] = RESOURCES["RestAPI"]["Properties"]["MethodSettings"]
    assert (method["ResourcePath"], method["HttpMethod"]) == ("/*", "*")
    rate = int(_resolve(method["ThrottlingRateLimit"], stage))
    burst = int(_resolve(method["ThrottlingBurstLimit"], stage))
    want = infra.api_throttling(CONFIG, stage)
    assert (rate, burst) == (want["rate_limit"], want["burst_limit"])
    assert CONFIG["stages"][stage][infra.THROTTLING_KEY] == want


def test_api_throttling_refuses_what_api_gateway_would_not_take() -> None:
    for bad in ({"rate_limit": 0}, {"burst": 5}, {"rate_limit": "10"}):
        config = {"stages": {"x": {infra.THROTTLING_KEY: bad}}}
        with pytest.raises(ValueError, match=infra.THROTTLING_KEY):
            infra.api_throttling(config, "x")


def _waits(env: dict[str, str], uses: tuple[str, ...]) -> dict[str, Any]:
    statements = infra.target_statements(Settings.from_env(env).targets_allow, uses)
    return {st["Sid"]: st for st in statements}


def test_target_grants_name_exactly_what_the_stage_allows() -> None:
    machine = "arn:aws:states:eu-west-1:123456789012:stateMachine:nightly"
    env = {"CADENZA_TARGETS_ALLOW": f"stepfunctions:{machine},ecs:batch,s3:acme-in,s3:acme-out"}
    workers = _waits(env, ("run", "stop", "list"))
    execution = "arn:aws:states:eu-west-1:123456789012:execution:nightly:*"
    assert workers["StartExecutions"]["Resource"] == [machine]
    assert workers["CheckExecutions"]["Resource"] == [execution]
    assert workers["StopExecutions"]["Resource"] == [execution]
    assert workers["RunTasks"]["Condition"] == {
        "ArnLike": {
            "ecs:cluster": [
                {
                    "Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:"
                    "${AWS::AccountId}:cluster/batch"
                }
            ]
        }
    }
    assert workers["DataObjects"]["Action"] == ["s3:GetObject", "s3:PutObject"]
    assert workers["DataObjects"]["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:s3:::acme-in/*"},
        {"Fn::Sub": "arn:${AWS::Partition}:s3:::acme-out/*"},
    ]
    assert set(_waits(env, ("stop",))) == {"StopExecutions", "StopTasks"}
    assert _waits({}, ("run", "stop", "list")) == {}


def test_the_old_allow_settings_are_aliases_of_the_one_list() -> None:
    """CADENZA_ALLOW_STATE_MACHINES / _ECS_CLUSTERS / _BUCKETS read as CADENZA_TARGETS_ALLOW
    entries of their kind: the same list, the same statements."""
    machine = "arn:aws:states:eu-west-1:123456789012:stateMachine:nightly"
    old = {
        "CADENZA_ALLOW_STATE_MACHINES": machine,
        "CADENZA_ALLOW_ECS_CLUSTERS": "batch",
        "CADENZA_ALLOW_BUCKETS": "acme-in, acme-out",
    }
    new = {"CADENZA_TARGETS_ALLOW": f"stepfunctions:{machine},ecs:batch,s3:acme-in,s3:acme-out"}
    assert Settings.from_env(old).targets_allow == Settings.from_env(new).targets_allow
    uses = ("run", "stop", "list")
    assert _waits(old, uses) == _waits(new, uses)
    both = Settings.from_env({**old, **new}).targets_allow
    assert both == Settings.from_env(new).targets_allow  # the same entry twice: once
    with pytest.raises(ValueError, match=r"CADENZA_ALLOW_STATE_MACHINES.*by its ARN"):
        Settings.from_env({"CADENZA_ALLOW_STATE_MACHINES": "nightly"})


def test_the_workers_may_call_the_targets_the_stage_allows() -> None:
    """CADENZA_TARGETS_ALLOW -> the workers' statements (a pattern's `*` is IAM's), in the
    stack's account and region; nothing for `http`; none for the other functions."""
    config = json.loads(json.dumps(CONFIG))
    allow = (
        "http:api.example.com,lambda:nightly-*,sqs:orders.fifo,sns:ops-alerts,eventbridge:default"
    )
    config["stages"]["dev"]["environment_variables"]["CADENZA_TARGETS_ALLOW"] = allow
    names = TEMPLATE["Mappings"][infra.NAMES_MAPPING]["dev"]
    arns = stack_arns(TEMPLATE, names, REGION)
    here = f"{REGION}:{ACCOUNT}"
    for function in infra.FUNCTIONS:
        policy = resolved(infra.iam_policy(config, "dev", function), arns, REGION)
        targets = {s["Sid"]: s for s in policy["Statement"] if s["Sid"].startswith("Targets")}
        if function not in (infra.START_WORKER, infra.SLICE_WORKER):
            assert targets == {}
            continue
        assert {sid: (s["Action"], s["Resource"]) for sid, s in targets.items()} == {
            "TargetsLambda": (
                ["lambda:InvokeFunction"],
                [
                    f"arn:aws:lambda:{here}:function:nightly-*",
                    f"arn:aws:lambda:{here}:function:nightly-*:*",
                ],
            ),
            "TargetsSqs": (
                ["sqs:GetQueueUrl", "sqs:SendMessage"],
                [f"arn:aws:sqs:{here}:orders.fifo"],
            ),
            "TargetsSns": (["sns:Publish"], [f"arn:aws:sns:{here}:ops-alerts"]),
            "TargetsEventbridge": (
                ["events:PutEvents"],
                [f"arn:aws:events:{here}:event-bus/default"],
            ),
        }


def test_a_malformed_target_allow_list_fails_where_it_is_read() -> None:
    with pytest.raises(ValueError, match="kind one of"):
        Settings.from_env({"CADENZA_TARGETS_ALLOW": "ftp:host"})
    with pytest.raises(ValueError, match="not a name or a pattern"):
        Settings.from_env({"CADENZA_TARGETS_ALLOW": "sqs:a b"})
    with pytest.raises(ValueError, match="by its ARN"):
        Settings.from_env({"CADENZA_TARGETS_ALLOW": "stepfunctions:nightly"})
    parsed = Settings.from_env({"CADENZA_TARGETS_ALLOW": " http:API.example.com , sqs:q* "})
    assert parsed.targets_allow == (("http", "api.example.com"), ("sqs", "q*"))


# ---- durable by default, operations ------------------------------------------------------


def test_data_is_kept_but_a_failed_create_cleans_up() -> None:
    for name, resource in RESOURCES.items():
        if resource.get("Type") in ("AWS::DynamoDB::Table", "AWS::S3::Bucket"):
            assert resource["DeletionPolicy"] == "RetainExceptOnCreate", name
            assert resource["UpdateReplacePolicy"] == "Retain", name
    for name, table in _table_resources().items():
        assert table["Properties"]["DeletionProtectionEnabled"] is True, name


def test_bucket_is_durable_and_unique_per_account_and_region() -> None:
    props = RESOURCES["ResultsBucket"]["Properties"]
    text, variables = props["BucketName"]["Fn::Sub"]
    assert text == "${Base}-${AWS::AccountId}-${AWS::Region}"
    assert variables["Base"]["Fn::FindInMap"][2] == "ResultsBucket"
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}  # asset zips are code
    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    noncurrent = rules[infra.NONCURRENT_VERSIONS_RULE["Id"]]
    assert noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"] > 0
    assert {"ExpireResults", "ExpireLogs", "AbortIncompleteUploads"} <= set(rules)
    for stage in STAGES:
        base = TEMPLATE["Mappings"][infra.NAMES_MAPPING][stage]["ResultsBucket"]
        assert len(f"{base}-123456789012-ap-southeast-2") <= 63


def test_a_too_long_bucket_name_is_refused() -> None:
    config = json.loads(json.dumps(CONFIG))
    config["stages"]["dev"]["environment_variables"]["CADENZA_BUCKET"] = "x" * 36
    with pytest.raises(ValueError, match="longer than 35"):
        infra.stage_names(config, "dev")


def _alarms() -> dict[str, dict[str, Any]]:
    return {
        k: v["Properties"]
        for k, v in RESOURCES.items()
        if v.get("Type") == "AWS::CloudWatch::Alarm"
    }


def test_alarms_cover_the_workers_queues_tables_api_and_supervisor() -> None:
    alarms = _alarms()
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "AlertsTopic"}]
    metrics = {(a.get("Namespace"), a.get("MetricName")) for a in alarms.values()}
    for function in infra.WORKER_QUEUES:
        name = infra.cfn_name(function)
        assert alarms[f"{name}ErrorsAlarm"]["Dimensions"][0]["Value"] == {"Ref": name}
        assert alarms[f"{name}ThrottlesAlarm"]["MetricName"] == "Throttles"
    for queue in infra.WORKER_QUEUES.values():
        age = alarms[f"{queue}AgeAlarm"]
        assert age["MetricName"] == "ApproximateAgeOfOldestMessage"
        for stage in STAGES:
            row = TEMPLATE["Mappings"][infra.NAMES_MAPPING][stage]
            seconds = int(_resolve(age["Threshold"], stage))
            assert seconds == 2 * int(row[f"{queue}VisibilityTimeout"])
    for table in _table_resources():
        expression = alarms[f"{table}ThrottleAlarm"]["Metrics"]
        assert {m["MetricStat"]["Metric"]["MetricName"] for m in expression[:2]} == {
            "ReadThrottleEvents",
            "WriteThrottleEvents",
        }
    assert ("AWS/ApiGateway", "5XXError") in metrics
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in metrics  # the DLQ
    silent = alarms["SupervisorNotInvokedAlarm"]
    assert (silent["MetricName"], silent["ComparisonOperator"]) == (
        "Invocations",
        "LessThanThreshold",
    )
    assert silent["TreatMissingData"] == "breaching"  # no data: not invoked at all


def test_api_has_an_access_log_and_a_name_per_stage() -> None:
    api = RESOURCES["RestAPI"]
    assert api["Properties"]["Name"] == {
        "Fn::FindInMap": [infra.NAMES_MAPPING, {"Ref": "Stage"}, "ApiName"]
    }
    access = api["Properties"]["AccessLogSetting"]
    assert access["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert json.loads(access["Format"])["requestId"] == "$context.requestId"
    group = RESOURCES["ApiAccessLogGroup"]["Properties"]
    for stage in STAGES:
        assert int(_resolve(group["RetentionInDays"], stage)) > 0
    assert "ApiGatewayAccount" in api["DependsOn"]


@pytest.mark.parametrize("stage", STAGES)
def test_workers_have_a_maximum_concurrency_from_the_stage(stage: str) -> None:
    for function in infra.WORKER_QUEUES:
        fn = RESOURCES[infra.cfn_name(function)]["Properties"]
        source = fn["Events"][infra.sqs_event_source_name(function)]["Properties"]
        cap = int(_resolve(source["ScalingConfig"]["MaximumConcurrency"], stage))
        assert cap == infra.max_concurrency(CONFIG, stage, function)
        assert 2 <= cap <= 1000, (function, cap)


@pytest.mark.parametrize("value", [1, 1001, "10", True])
def test_a_maximum_concurrency_sqs_would_refuse_is_refused(value: object) -> None:
    config = {"stages": {"s": {"lambda_functions": {"slice_worker": {"max_concurrency": value}}}}}
    with pytest.raises(ValueError, match="max_concurrency"):
        infra.max_concurrency(config, "s", "slice_worker")
