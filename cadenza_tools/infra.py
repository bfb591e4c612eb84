"""The AWS resources Chalice does not create, generated from the PynamoDB models.

``python -m cadenza_tools.infra > infra/resources.json`` prints a CloudFormation fragment for
``chalice package --stage STAGE --merge-template infra/resources.json``: the DynamoDB
tables (keys, attribute definitions and GSIs read off ``build_models``), the start and slice
queues with their dead-letter queue, the results bucket, the alerts topic, and patches to
the function resources Chalice generates (``ReportBatchItemFailures`` on both SQS event
sources, which Chalice never sets; ``DependsOn`` so the event source mappings are created
after the queues). ``python -m cadenza_tools.infra --write`` also writes the IAM policy files
``.chalice/policy-<stage>-<function>.json``, one role per function: with
``autogen_policy: false``, Chalice gives each function the role its
``lambda_functions.<function>.iam_policy_file`` names.

Names follow the stage. Chalice's merge template is one file for every stage, so the
template takes a ``Stage`` parameter (no default: deploying without it fails at once) and
picks every name from a ``StageNames`` mapping. The mapping is built here from
``.chalice/config.json``: each stage's environment variables go through
``Settings.from_env`` and ``build_models`` exactly as they do in the Lambda functions, so the
tables and queues in the template are the ones the functions of that stage talk to.

This module is a build tool: ``app.py`` never imports it, it is not needed at run time.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from chalice.config import Config
from chalice.constants import DEFAULT_LAMBDA_MEMORY_SIZE, DEFAULT_LAMBDA_TIMEOUT
from chalice.utils import to_cfn_resource_name
from pynamodb.attributes import Attribute
from pynamodb.indexes import GlobalSecondaryIndex, Index, LocalSecondaryIndex

from chalicelib.adapters.dynamodb.models import PAY_PER_REQUEST, Models, build_models
from chalicelib.config import Settings

PROJECT_DIR = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = Path("infra") / "resources.json"
STAGE_PARAMETER = "Stage"
NAMES_MAPPING = "StageNames"

# The Chalice functions (app.py) and the CloudFormation names `chalice package` gives them
# and their SQS event sources (chalice.utils.to_cfn_resource_name; the API handler is
# renamed "APIHandler" by chalice.package.SAMTemplateGenerator._generate_restapi).
API_HANDLER = "api_handler"
SUPERVISOR = "supervisor"
START_WORKER = "start_worker"
SLICE_WORKER = "slice_worker"
FUNCTIONS = (API_HANDLER, SUPERVISOR, START_WORKER, SLICE_WORKER)
# worker function -> the logical name of the queue it consumes
WORKER_QUEUES = {START_WORKER: "StartQueue", SLICE_WORKER: "SliceQueue"}
# AWS: "set the source queue's visibility timeout to at least six times the timeout that
# you configure on your function".
VISIBILITY_TIMEOUT_FACTOR = 6
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
# The environment variables Settings.from_env reads for names -> the StageNames key (and,
# but for the prefix, the logical resource) holding that name. The template sets them, and
# CADENZA_STAGE, from the Stage parameter and the resources.
ENVIRONMENT_NAMES = {
    "CADENZA_PREFIX": "Prefix",
    "CADENZA_JOBS_TABLE": "JobTable",
    "CADENZA_RUNS_TABLE": "RunTable",
    "CADENZA_SLICES_TABLE": "SliceTable",
    "CADENZA_SUPERVISOR_TABLE": "SupervisorTable",
    "CADENZA_START_QUEUE": "StartQueue",
    "CADENZA_SLICE_QUEUE": "SliceQueue",
    "CADENZA_DLQ": "DeadLetterQueue",
    "CADENZA_BUCKET": "ResultsBucket",
    "CADENZA_ALERTS_TABLE": "AlertTable",
    "CADENZA_ALERTS_TOPIC": "AlertsTopic",
    "CADENZA_ASSETS_TABLE": "AssetTable",
}
ALERTS_SUFFIX = "alerts"
# the topic's ARN (the notifier publishes to it; the functions may not create the topic)
TOPIC_ARN_VARIABLE = "CADENZA_ALERTS_TOPIC_ARN"
# API Gateway's stage-level throttling, per stage: `api_throttling` in the stage's section of
# .chalice/config.json (a Cadenza key; Chalice ignores it), else these
THROTTLING_KEY = "api_throttling"
DEFAULT_THROTTLING = {"rate_limit": 50, "burst_limit": 100}


def cfn_name(name: str) -> str:
    """The CloudFormation name `chalice package` gives a resource (function, event source)."""
    if name == API_HANDLER:
        return "APIHandler"
    return str(to_cfn_resource_name(name))


def sqs_event_source_name(function: str) -> str:
    """The SAM event name Chalice gives a function's ``@app.on_sqs_message`` source."""
    return cfn_name(f"{function}-sqs-event-source")


# ---- the Chalice configuration ---------------------------------------------------------------


def load_chalice_config(project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((project_dir / ".chalice" / "config.json").read_text())
    return config


def stages(config: Mapping[str, Any]) -> list[str]:
    return list(config.get("stages", {}))


def _chalice_config(config: Mapping[str, Any], stage: str, function: str) -> Any:
    return Config(
        chalice_stage=stage,
        function_name=function,
        config_from_disk=dict(config),
        default_params={
            "lambda_timeout": DEFAULT_LAMBDA_TIMEOUT,
            "lambda_memory_size": DEFAULT_LAMBDA_MEMORY_SIZE,
        },
    )


def function_environment(config: Mapping[str, Any], stage: str, function: str) -> dict[str, str]:
    """The environment Chalice gives ``function`` in ``stage`` (global, stage, function)."""
    env: dict[str, str] = _chalice_config(config, stage, function).environment_variables
    return env


def log_retention(config: Mapping[str, Any], stage: str, function: str) -> int | None:
    days = _chalice_config(config, stage, function).log_retention_in_days
    return None if days is None else int(days)


def function_timeout(config: Mapping[str, Any], stage: str, function: str) -> int:
    return int(_chalice_config(config, stage, function).lambda_timeout)


# How many invocations of a worker its SQS event source runs at once (the mapping's
# ScalingConfig.MaximumConcurrency, 2 to 1000): `max_concurrency` in the function's section
# of a stage in .chalice/config.json (a Cadenza key; Chalice ignores it), else this.
CONCURRENCY_KEY = "max_concurrency"
DEFAULT_MAX_CONCURRENCY = 50
MAX_CONCURRENCY_RANGE = (2, 1000)


def max_concurrency(config: Mapping[str, Any], stage: str, function: str) -> int:
    """A worker's maximum concurrency on its queue, checked against SQS's range."""
    section = config["stages"][stage].get("lambda_functions", {}).get(function, {})
    value = section.get(CONCURRENCY_KEY, DEFAULT_MAX_CONCURRENCY)
    low, high = MAX_CONCURRENCY_RANGE
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"stage {stage}: {function}.{CONCURRENCY_KEY} takes {low} to {high}")
    return value


def api_throttling(config: Mapping[str, Any], stage: str) -> dict[str, int]:
    """The stage's API Gateway throttling: steady requests per second and burst."""
    given = config["stages"][stage].get(THROTTLING_KEY, {})
    unknown = set(given) - set(DEFAULT_THROTTLING)
    if unknown:
        raise ValueError(f"stage {stage}: {THROTTLING_KEY} has unknown keys {sorted(unknown)}")
    found = {**DEFAULT_THROTTLING, **given}
    if not all(isinstance(v, int) and v > 0 for v in found.values()):
        raise ValueError(f"stage {stage}: {THROTTLING_KEY} takes positive integers: {found}")
    return found


def stage_settings(config: Mapping[str, Any], stage: str) -> Settings:
    """The Settings every function of ``stage`` reads; they must agree on every name."""
    found = {f: Settings.from_env(function_environment(config, stage, f)) for f in FUNCTIONS}
    first = found[FUNCTIONS[0]]
    for function, settings in found.items():
        if settings != first:
            raise ValueError(f"stage {stage}: {function} is configured with other names")
    return first


def alerts_topic_name(settings: Settings) -> str:
    return f"{settings.prefix}-{ALERTS_SUFFIX}"


# ---- tables, from the models ---------------------------------------------------------------


def table_logical_name(field_name: str) -> str:
    """``Models.job`` -> ``JobTable``, ``Models.supervisor`` -> ``SupervisorTable``."""
    return cfn_name(field_name) + "Table"


def model_fields() -> list[str]:
    """The fields of ``Models`` that hold model classes (not the connection)."""
    return [f.name for f in fields(Models) if f.name != "connection"]


def _members(cls: type, kind: type) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, kind):
                found[name] = value
    return found


def _key_attributes(attributes: Iterable[Any]) -> list[Any]:
    keys = [a for a in attributes if a.is_hash_key or a.is_range_key]
    hashes = [a for a in keys if a.is_hash_key]
    if len(hashes) != 1 or len(keys) > 2:
        raise ValueError(f"expected one hash key and at most one range key, got {keys}")
    return sorted(keys, key=lambda a: 0 if a.is_hash_key else 1)


def _key_schema(keys: Sequence[Any]) -> list[dict[str, str]]:
    return [
        {"AttributeName": a.attr_name, "KeyType": "HASH" if a.is_hash_key else "RANGE"}
        for a in keys
    ]


def _projection(index_cls: Any) -> dict[str, Any]:
    projection = index_cls.Meta.projection
    out: dict[str, Any] = {"ProjectionType": projection.projection_type}
    if projection.non_key_attributes:
        out["NonKeyAttributes"] = sorted(projection.non_key_attributes)
    return out


def table_properties(model: Any) -> dict[str, Any]:
    """CloudFormation ``AWS::DynamoDB::Table`` properties (all but ``TableName``) for a
    PynamoDB model class: keys, attribute definitions, indexes and their projections."""
    billing = getattr(model.Meta, "billing_mode", None)
    if billing != PAY_PER_REQUEST:
        raise ValueError(f"{model.__name__}: billing_mode {billing!r}, expected {PAY_PER_REQUEST}")
    keys = _key_attributes(model.get_attributes().values())
    definitions = {a.attr_name: a.attr_type for a in keys}
    gsis: list[dict[str, Any]] = []
    lsis: list[dict[str, Any]] = []
    indexes = _members(model, Index)
    for index in sorted(indexes.values(), key=lambda i: str(type(i).Meta.index_name)):
        index_cls = type(index)
        index_keys = _key_attributes(_members(index_cls, Attribute).values())
        for a in index_keys:
            if definitions.setdefault(a.attr_name, a.attr_type) != a.attr_type:
                raise ValueError(f"{model.__name__}.{a.attr_name}: two types")
        spec = {
            "IndexName": index_cls.Meta.index_name,
            "KeySchema": _key_schema(index_keys),
            "Projection": _projection(index_cls),
        }
        if isinstance(index, GlobalSecondaryIndex):
            gsis.append(spec)
        elif isinstance(index, LocalSecondaryIndex):
            lsis.append(spec)
        else:  # pragma: no cover - pynamodb has no other kind
            raise TypeError(f"unknown index kind {type(index)!r}")
    props: dict[str, Any] = {
        "BillingMode": PAY_PER_REQUEST,
        "AttributeDefinitions": [
            {"AttributeName": name, "AttributeType": definitions[name]}
            for name in sorted(definitions)
        ],
        "KeySchema": _key_schema(keys),
    }
    if gsis:
        props["GlobalSecondaryIndexes"] = gsis
    if lsis:
        props["LocalSecondaryIndexes"] = lsis
    stream = getattr(model.Meta, "stream_view_type", None)
    if stream:
        props["StreamSpecification"] = {"StreamViewType": stream}
    props["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    return {**props, **time_to_live(model)}


def time_to_live(model: Any) -> dict[str, Any]:
    """The table's TimeToLiveSpecification, if its model has a TTL attribute (retention:
    DynamoDB deletes an item some time after that attribute's time)."""
    ttl = model._ttl_attribute()
    if ttl is None:
        return {}
    return {"TimeToLiveSpecification": {"AttributeName": ttl.attr_name, "Enabled": True}}


def index_names(model: Any) -> list[str]:
    return sorted(str(type(i).Meta.index_name) for i in _members(model, Index).values())


# ---- the template ---------------------------------------------------------------------------


def _name(key: str) -> dict[str, Any]:
    return {"Fn::FindInMap": [NAMES_MAPPING, {"Ref": STAGE_PARAMETER}, key]}


def stage_names(config: Mapping[str, Any], stage: str) -> dict[str, str | int]:
    """One stage's row of the ``StageNames`` mapping: every physical name (and the numbers
    that follow the stage's function timeouts)."""
    settings = stage_settings(config, stage)
    models = build_models(settings)
    row: dict[str, str | int] = {
        table_logical_name(f): str(getattr(models, f).Meta.table_name) for f in model_fields()
    }
    row.update(
        Prefix=settings.prefix,
        StartQueue=settings.start_queue,
        SliceQueue=settings.slice_queue,
        DeadLetterQueue=settings.dead_letter_queue,
        ResultsBucket=settings.bucket,
        AlertsTopic=alerts_topic_name(settings),
        MaxReceiveCount=str(settings.max_receive_count),
        HistoryDays=str(settings.history_days),
    )
    if len(settings.bucket) > MAX_BUCKET_BASE:
        raise ValueError(
            f"stage {stage}: CADENZA_BUCKET {settings.bucket!r} is longer than "
            f"{MAX_BUCKET_BASE} characters (the account and region are appended)"
        )
    row.update(operations_names(config, stage))
    throttling = api_throttling(config, stage)
    row.update(
        ApiThrottleRate=str(throttling["rate_limit"]),
        ApiThrottleBurst=str(throttling["burst_limit"]),
    )
    for function, queue in WORKER_QUEUES.items():
        timeout = function_timeout(config, stage, function)
        row[f"{queue}VisibilityTimeout"] = str(VISIBILITY_TIMEOUT_FACTOR * timeout)
        row[f"{queue}MaxConcurrency"] = str(max_concurrency(config, stage, function))
    return row


def _tables(config: Mapping[str, Any]) -> dict[str, Any]:
    """The tables, from the first stage's models; every stage must build the same shapes."""
    shapes: dict[str, dict[str, Any]] | None = None
    for stage in stages(config):
        models = build_models(stage_settings(config, stage))
        found = {f: table_properties(getattr(models, f)) for f in model_fields()}
        if shapes is None:
            shapes = found
        elif found != shapes:
            raise ValueError(f"stage {stage} builds different table shapes")
    resources: dict[str, Any] = {}
    for field_name, props in (shapes or {}).items():
        logical = table_logical_name(field_name)
        resources[logical] = {
            "Type": "AWS::DynamoDB::Table",
            **KEEP_DATA,
            "Properties": {
                "TableName": _name(logical),
                **props,
                "DeletionProtectionEnabled": True,
                "Tags": _tags(),
            },
        }
    return resources


# Data outlives the stack (a deleted stack keeps its tables and bucket; `cadenza destroy
# --delete-data` removes them), but a first create that fails removes what it created, so
# that the retry does not meet "already exists".
KEEP_DATA = {"DeletionPolicy": "RetainExceptOnCreate", "UpdateReplacePolicy": "Retain"}
# an overwritten or deleted object's old version is kept this long, then expires
NONCURRENT_VERSION_DAYS = 30
NONCURRENT_VERSIONS_RULE = {
    "Id": "noncurrent-versions",
    "Status": "Enabled",
    "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_VERSION_DAYS},
    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
}


# 63 - len("-123456789012-ap-southeast-2")
MAX_BUCKET_BASE = 35


def bucket_name() -> dict[str, Any]:
    """The results bucket's name: the stage's ``CADENZA_BUCKET`` followed by the account and
    the region (S3 names are global; this one is unique per account and region, and at most
    63 characters for a base name of up to 35)."""
    return {
        "Fn::Sub": [
            "${Base}-${AWS::AccountId}-${AWS::Region}",
            {"Base": _name("ResultsBucket")},
        ]
    }


def _tags() -> list[dict[str, Any]]:
    return [{"Key": "cadenza:stage", "Value": {"Ref": STAGE_PARAMETER}}]


def _queues() -> dict[str, Any]:
    resources: dict[str, Any] = {
        "DeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": _name("DeadLetterQueue"),
                "MessageRetentionPeriod": DLQ_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
                "Tags": _tags(),
            },
        }
    }
    for queue in WORKER_QUEUES.values():
        resources[queue] = {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": _name(queue),
                "VisibilityTimeout": _name(f"{queue}VisibilityTimeout"),
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                    "maxReceiveCount": _name("MaxReceiveCount"),
                },
                "SqsManagedSseEnabled": True,
                "Tags": _tags(),
            },
        }
    return resources


def _bucket_and_alerts() -> dict[str, Any]:
    return {
        "ResultsBucket": {
            "Type": "AWS::S3::Bucket",
            **KEEP_DATA,
            "Properties": {
                "BucketName": bucket_name(),
                # it holds code (asset zips): an overwritten or deleted zip can be restored
                "VersioningConfiguration": {"Status": "Enabled"},
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "LifecycleConfiguration": {"Rules": [NONCURRENT_VERSIONS_RULE, *lifecycle_rules()]},
                "Tags": _tags(),
            },
        },
        "AlertsTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": _name("AlertsTopic"), "Tags": _tags()},
        },
        "DeadLetterAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmDescription": "Cadenza messages reached the dead-letter queue",
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [
                    {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}
                ],
                "Statistic": "Maximum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [{"Ref": "AlertsTopic"}],
            },
        },
        "SupervisorErrorsAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmDescription": "The Cadenza supervisor failed in two 5-minute periods running",
                "Namespace": "AWS/Lambda",
                "MetricName": "Errors",
                "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": cfn_name(SUPERVISOR)}}],
                "Statistic": "Sum",
                "Period": 300,
                "EvaluationPeriods": 2,
                "Threshold": 0,
                "ComparisonOperator": "GreaterThanThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": [{"Ref": "AlertsTopic"}],
            },
        },
    }


# what the bucket keeps for the stage's history days (CADENZA_HISTORY_DAYS): result files
# and run logs; asset zips (assets/) stay until their asset is deleted
EXPIRING_PREFIXES = {"Results": "results/", "Logs": "logs/"}
ABORT_UPLOADS_DAYS = 7


def lifecycle_rules() -> list[dict[str, Any]]:
    """The bucket's lifecycle: result files and logs expire after the stage's history
    days; unfinished multipart uploads are aborted."""
    rules: list[dict[str, Any]] = [
        {
            "Id": f"Expire{name}",
            "Status": "Enabled",
            "Prefix": prefix,
            "ExpirationInDays": _name("HistoryDays"),
        }
        for name, prefix in EXPIRING_PREFIXES.items()
    ]
    rules.append(
        {
            "Id": "AbortIncompleteUploads",
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_UPLOADS_DAYS},
        }
    )
    return rules


def environment_refs() -> dict[str, Any]:
    """The functions' name variables, as references to the Stage parameter and resources."""
    refs: dict[str, Any] = {
        "CADENZA_STAGE": {"Ref": STAGE_PARAMETER},
        TOPIC_ARN_VARIABLE: {"Ref": "AlertsTopic"},  # a topic's Ref is its ARN
    }
    for var, key in ENVIRONMENT_NAMES.items():
        if key == "Prefix":
            refs[var] = _name(key)
        elif key.endswith("Queue"):
            refs[var] = {"Fn::GetAtt": [key, "QueueName"]}  # Ref would be the URL
        elif key.endswith("Topic"):
            refs[var] = {"Fn::GetAtt": [key, "TopicName"]}  # Ref would be the ARN
        else:
            refs[var] = {"Ref": key}  # tables and buckets: Ref is the name
    return refs


def _function_patches() -> dict[str, Any]:
    """Deep-merged into the functions Chalice generates (chalice.package.TemplateDeepMerger:
    dicts merge key by key, anything else in this file wins).

    * every name a function reads from its environment becomes a reference to the resource
      in this template (the same name as .chalice/config.json says for that stage; see
      ``check_environment``), so a stack's functions always use that stack's resources, even
      if ``Stage`` was given wrong, and CloudFormation creates the resources first;
    * the SQS event sources read the queue ARN from the queue resource (Chalice writes the
      ARN as text, which gives CloudFormation no ordering) and report partial batch failures
      (the handlers return ``batchItemFailures``; Chalice never sets the response type, and
      without it Lambda deletes a whole batch when the handler returns normally), and
      run at most the stage's ``max_concurrency`` invocations at once.
    """
    patches: dict[str, Any] = {
        cfn_name(f): {"Properties": {"Environment": {"Variables": environment_refs()}}}
        for f in FUNCTIONS
    }
    for function, queue in WORKER_QUEUES.items():
        patches[cfn_name(function)]["Properties"]["Events"] = {
            sqs_event_source_name(function): {
                "Properties": {
                    "Queue": {"Fn::Sub": f"${{{queue}.Arn}}"},
                    "FunctionResponseTypes": ["ReportBatchItemFailures"],
                    "ScalingConfig": {"MaximumConcurrency": _name(f"{queue}MaxConcurrency")},
                }
            }
        }
    return patches


# API Gateway's own refusals (IAM authorization, throttling, an unknown path...), in the
# API's error shape (chalicelib/entrypoints/http/errors.py), as the local gateway answers
# them (cadenza_tools/local/gateway.py). $context.error.messageString is quoted already.
GATEWAY_ERRORS = {
    "MISSING_AUTHENTICATION_TOKEN": (403, "forbidden"),
    "INVALID_SIGNATURE": (403, "forbidden"),
    "EXPIRED_TOKEN": (403, "forbidden"),
    "ACCESS_DENIED": (403, "forbidden"),
    "UNAUTHORIZED": (401, "unauthenticated"),
    "THROTTLED": (429, "throttled"),
    "DEFAULT_4XX": (None, "gateway_refused"),
    "DEFAULT_5XX": (None, "internal"),
}


def gateway_error_template(code: str) -> str:
    return (
        f'{{"error": "{code}", "message": $context.error.messageString, '
        '"request_id": "$context.requestId"}'
    )


def _gateway_responses_patch() -> dict[str, Any]:
    """Merged into the swagger document Chalice generates for `RestAPI`, so that a change
    redeploys the stage with it."""
    responses: dict[str, Any] = {}
    for kind, (status, code) in GATEWAY_ERRORS.items():
        response: dict[str, Any] = {
            "responseTemplates": {"application/json": gateway_error_template(code)}
        }
        if status is not None:
            response["statusCode"] = status
        responses[kind] = response
    gateway_responses = {"x-amazon-apigateway-gateway-responses": responses}
    return {"RestAPI": {"Properties": {"DefinitionBody": gateway_responses}}}


def _api_throttling_patch() -> dict[str, Any]:
    """Stage-level throttling of the REST API Chalice generates (``RestAPI``, an
    ``AWS::Serverless::Api``): every method of every resource, at the stage's rate and burst;
    API Gateway answers 429 beyond them."""
    return {
        "RestAPI": {
            "Properties": {
                "MethodSettings": [
                    {
                        "ResourcePath": "/*",
                        "HttpMethod": "*",
                        "ThrottlingRateLimit": _name("ApiThrottleRate"),
                        "ThrottlingBurstLimit": _name("ApiThrottleBurst"),
                    }
                ]
            }
        }
    }


def _rest_api_patch() -> dict[str, Any]:
    """The REST API's gateway responses and throttling, in one patch of `RestAPI`."""
    responses = _gateway_responses_patch()["RestAPI"]["Properties"]
    throttling = _api_throttling_patch()["RestAPI"]["Properties"]
    access = _api_access_log_patch()["RestAPI"]
    return {
        "RestAPI": {
            "DependsOn": access["DependsOn"],
            "Properties": {**responses, **throttling, **access["Properties"]},
        }
    }


def _api_log_group_patch(config: Mapping[str, Any]) -> dict[str, Any]:
    """Chalice bug (aws/chalice#2079): with ``log_retention_in_days`` the API handler's log
    group is named ``/aws/lambda/${ApiHandler}``, but the function is renamed ``APIHandler``
    in the SAM template, so CloudFormation rejects the reference. The merge fixes the name;
    it can only do so if every stage has a retention (one merge file serves every stage)."""
    retention = {s: log_retention(config, s, API_HANDLER) for s in stages(config)}
    if all(days is None for days in retention.values()):
        return {}
    if any(days is None for days in retention.values()):
        raise ValueError(f"log_retention_in_days must be set for every stage or none: {retention}")
    return {
        cfn_name(f"{API_HANDLER}-log-group"): {
            "Properties": {"LogGroupName": {"Fn::Sub": f"/aws/lambda/${{{cfn_name(API_HANDLER)}}}"}}
        }
    }


# ---- operations: alarms, API access logs ----------------------------------------------------

ALARM_PERIOD = 300  # seconds, CloudWatch's usual 5 minutes
# an oldest message older than this many visibility timeouts: the worker is not keeping up
# (or not consuming at all)
AGE_ALARM_VISIBILITY_TIMEOUTS = 2
DEFAULT_LOG_RETENTION_DAYS = 30
# API Gateway's access log, one JSON object a request ($context variables)
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "time": "$context.requestTimeEpoch",
        "ip": "$context.identity.sourceIp",
        "caller": "$context.identity.caller",
        "userArn": "$context.identity.userArn",
        "method": "$context.httpMethod",
        "path": "$context.path",
        "resource": "$context.resourcePath",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "latencyMs": "$context.responseLatency",
        "integrationLatencyMs": "$context.integrationLatency",
        "error": "$context.error.message",
    },
    separators=(",", ":"),
)


def operations_names(config: Mapping[str, Any], stage: str) -> dict[str, str | int]:
    """The stage's names and numbers the alarms and access logs take (``StageNames``)."""
    row: dict[str, str | int] = {
        "ApiName": f"{stage_settings(config, stage).prefix}-api",
        "ApiStage": str(_chalice_config(config, stage, API_HANDLER).api_gateway_stage),
    }
    days = log_retention(config, stage, API_HANDLER)
    row["AccessLogRetentionDays"] = str(days or DEFAULT_LOG_RETENTION_DAYS)
    for function, queue in WORKER_QUEUES.items():
        visibility = VISIBILITY_TIMEOUT_FACTOR * function_timeout(config, stage, function)
        # a number: an alarm's Threshold taken as a string fails on LocalStack's CloudFormation
        row[f"{queue}AgeAlarmSeconds"] = AGE_ALARM_VISIBILITY_TIMEOUTS * visibility
    return row


def _alarm(description: str, metric: Mapping[str, Any], **rule: Any) -> dict[str, Any]:
    """A CloudWatch alarm on one metric (or a metric math ``Metrics`` list) that notifies
    the alerts topic when it fires and when it is back to OK."""
    properties: dict[str, Any] = {
        "AlarmDescription": description,
        **metric,
        "EvaluationPeriods": 1,
        "Threshold": 0,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        **rule,
        "AlarmActions": [{"Ref": "AlertsTopic"}],
        "OKActions": [{"Ref": "AlertsTopic"}],
    }
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": properties}


def _metric(namespace: str, name: str, dimensions: Mapping[str, Any], stat: str) -> dict[str, Any]:
    return {
        "Namespace": namespace,
        "MetricName": name,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
        "Statistic": stat,
        "Period": ALARM_PERIOD,
    }


def _worker_alarms() -> dict[str, Any]:
    alarms: dict[str, Any] = {}
    for function, queue in WORKER_QUEUES.items():
        logical = cfn_name(function)
        fn = {"FunctionName": {"Ref": logical}}
        alarms[f"{logical}ErrorsAlarm"] = _alarm(
            f"Cadenza {function} failed (an uncaught error or a timeout)",
            _metric("AWS/Lambda", "Errors", fn, "Sum"),
        )
        alarms[f"{logical}ThrottlesAlarm"] = _alarm(
            f"Cadenza {function} was throttled (the account's or its concurrency limit)",
            _metric("AWS/Lambda", "Throttles", fn, "Sum"),
        )
        alarms[f"{queue}AgeAlarm"] = _alarm(
            f"The oldest message in the {queue} waited longer than "
            f"{AGE_ALARM_VISIBILITY_TIMEOUTS} visibility timeouts: {function} is behind",
            _metric(
                "AWS/SQS",
                "ApproximateAgeOfOldestMessage",
                {"QueueName": {"Fn::GetAtt": [queue, "QueueName"]}},
                "Maximum",
            ),
            Threshold=_name(f"{queue}AgeAlarmSeconds"),
        )
    return alarms


def _table_throttle_alarms(tables: Iterable[str]) -> dict[str, Any]:
    """One alarm per table on its read and write throttle events together (on-demand tables
    throttle too, on a hot partition or at the account's table limits)."""
    alarms: dict[str, Any] = {}
    for table in tables:
        metrics: list[dict[str, Any]] = [
            {
                "Id": f"m{i}",
                "ReturnData": False,
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/DynamoDB",
                        "MetricName": name,
                        "Dimensions": [{"Name": "TableName", "Value": {"Ref": table}}],
                    },
                    "Period": ALARM_PERIOD,
                    "Stat": "Sum",
                },
            }
            for i, name in enumerate(("ReadThrottleEvents", "WriteThrottleEvents"), 1)
        ]
        metrics.append({"Id": "throttled", "Expression": "m1 + m2", "ReturnData": True})
        alarms[f"{table}ThrottleAlarm"] = _alarm(
            f"DynamoDB throttled requests on the {table}", {"Metrics": metrics}
        )
    return alarms


def _operations(tables: Iterable[str]) -> dict[str, Any]:
    """The alarms for a stage (routed to the alerts topic) and the API's access log."""
    api = {"ApiName": _name("ApiName"), "Stage": _name("ApiStage")}
    return {
        **_worker_alarms(),
        **_table_throttle_alarms(tables),
        "Api5xxAlarm": _alarm(
            "The Cadenza API answered 5xx (its own errors or the gateway's)",
            _metric("AWS/ApiGateway", "5XXError", api, "Sum"),
        ),
        "SupervisorNotInvokedAlarm": _alarm(
            "The Cadenza supervisor was not invoked in 5 minutes (its schedule stopped)",
            _metric("AWS/Lambda", "Invocations", {"FunctionName": {"Ref": "Supervisor"}}, "Sum"),
            Threshold=1,
            ComparisonOperator="LessThanThreshold",
            TreatMissingData="breaching",
        ),
        "ApiAccessLogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": {
                    "Fn::Sub": ["/aws/apigateway/${Name}", {"Name": _name("ApiName")}]
                },
                "RetentionInDays": _name("AccessLogRetentionDays"),
            },
        },
        # API Gateway writes logs with a role set once per account and region
        "ApiGatewayLogsRole": {
            "Type": "AWS::IAM::Role",
            # other stacks' APIs in the account may log through it
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "apigateway.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "ManagedPolicyArns": [
                    {
                        "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                        "AmazonAPIGatewayPushToCloudWatchLogs"
                    }
                ],
            },
        },
        "ApiGatewayAccount": {
            "Type": "AWS::ApiGateway::Account",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {"CloudWatchRoleArn": {"Fn::GetAtt": ["ApiGatewayLogsRole", "Arn"]}},
        },
    }


def _api_access_log_patch() -> dict[str, Any]:
    """The REST API Chalice generates gets a name per stage (its metrics' ``ApiName``;
    Chalice's swagger title is the app's name, the same for every stage) and an access log."""
    return {
        "RestAPI": {
            "DependsOn": ["ApiGatewayAccount"],
            "Properties": {
                "Name": _name("ApiName"),
                "AccessLogSetting": {
                    "DestinationArn": {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]},
                    "Format": ACCESS_LOG_FORMAT,
                },
            },
        }
    }


def check_environment(config: Mapping[str, Any], stage: str) -> None:
    """Each environment variable the template sets from a resource must name, in
    .chalice/config.json, the resource the template creates for that stage."""
    row = stage_names(config, stage)
    for function in FUNCTIONS:
        env = function_environment(config, stage, function)
        if env.get("CADENZA_STAGE", stage) != stage:
            raise ValueError(f"stage {stage}: {function} has CADENZA_STAGE={env['CADENZA_STAGE']}")
        for var, key in ENVIRONMENT_NAMES.items():
            if var in env and env[var] != row[key]:
                raise ValueError(
                    f"stage {stage}: {function} has {var}={env[var]!r}, "
                    f"the template creates {row[key]!r}"
                )


def _outputs(table_resources: Iterable[str]) -> dict[str, Any]:
    outputs: dict[str, Any] = {f"{t}Name": {"Value": {"Ref": t}} for t in table_resources}
    for queue in ("DeadLetterQueue", *WORKER_QUEUES.values()):
        outputs[f"{queue}Url"] = {"Value": {"Ref": queue}}
    outputs["ResultsBucketName"] = {"Value": {"Ref": "ResultsBucket"}}
    outputs["AlertsTopicArn"] = {"Value": {"Ref": "AlertsTopic"}}
    return outputs


def build_template(config: Mapping[str, Any]) -> dict[str, Any]:
    """The merge template for ``chalice package --merge-template``, for every stage."""
    all_stages = stages(config)
    if not all_stages:
        raise ValueError(".chalice/config.json has no stages")
    tables = _tables(config)
    for stage in all_stages:
        check_environment(config, stage)
    return {
        "Metadata": {
            "cadenza:generated-by": "python -m cadenza_tools.infra > infra/resources.json",
            "cadenza:sources": "chalicelib/adapters/dynamodb/models.py, .chalice/config.json",
        },
        "Parameters": {
            STAGE_PARAMETER: {
                "Type": "String",
                "AllowedValues": all_stages,
                "Description": "The chalice stage this template was packaged for "
                "(chalice package --stage); selects the resource names.",
            }
        },
        "Mappings": {NAMES_MAPPING: {s: stage_names(config, s) for s in all_stages}},
        "Resources": {
            **tables,
            **_queues(),
            **_bucket_and_alerts(),
            **_function_patches(),
            **_rest_api_patch(),
            **_api_log_group_patch(config),
            **_operations(tables),
        },
        "Outputs": _outputs(tables),
    }


# ---- the IAM policies: one role per function ------------------------------------------------


@dataclass(frozen=True)
class Grants:
    """What one function's code does with the stack's resources: its IAM policy, on the
    stack's own tables, indexes, queues, bucket prefixes and topic. TransactWriteItems is
    authorised per item (PutItem, UpdateItem, DeleteItem), so it needs no grant of its own."""

    # a `Models` field -> the DynamoDB actions on its table
    tables: Mapping[str, tuple[str, ...]]
    # a `Models` field -> the indexes of its table the function queries ("*": every one)
    indexes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sends: tuple[str, ...] = ()  # the queues it sends nudges to: "start", "slice"
    consumes: str | None = None  # the queue its SQS event source mapping reads
    # a key prefix of the results bucket -> the S3 object actions on it
    objects: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    lists_bucket: bool = False  # a run's result file is the listing of its parts
    publishes: bool = False  # alerts, to the stage's topic
    reads_secrets: bool = False  # the secrets jobs name, under the stage's prefix
    # the targets' calls on what the stage allows (CADENZA_TARGETS_ALLOW): "run" calls them
    # (invoke, send, publish, start and check), "stop" stops executions and tasks (a stopped
    # or timed-out run), "list" lists a bucket (slicing an s3 reader's run again: a recovery)
    targets: tuple[str, ...] = ()
    # notifications: publishes to the topics jobs may name (the stage's CADENZA_NOTIFY_TOPICS)
    notifies: bool = False


GET, PUT, UPDATE, DELETE, QUERY = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
)
# a transaction's condition on an item it does not write (a notification's settled record)
CHECK = "dynamodb:ConditionCheckItem"
ASSETS_PREFIX, RESULTS_PREFIX = "assets/", "results/"
LOGS_PREFIX = "logs/"  # run logs (chalicelib/adapters/s3_logs.py), kept the history days
# Checked against the calls each function makes: tests/integration/test_iam_calls.py.
FUNCTION_GRANTS: dict[str, Grants] = {
    # every route: jobs and runs written, executions controlled (their slices recovered,
    # put, or deleted by a rerun), assets uploaded and deleted, result files read, the
    # supervisor halted and restarted, the cluster counters read (BatchGetItem)
    API_HANDLER: Grants(
        tables={
            "job": (GET, PUT, UPDATE),
            # BatchGetItem: a listing's runs (the runs' listing indexes project few fields)
            "run": (GET, PUT, UPDATE, QUERY, "dynamodb:BatchGetItem"),
            # remote agents: their slices finished (UPDATE), their tasks and records kept
            # in the supervisor table, their alerts kept (alert PUT) and published
            "slice": (PUT, DELETE, QUERY, UPDATE),
            "supervisor": (GET, UPDATE, "dynamodb:BatchGetItem", PUT, DELETE),
            "alert": (QUERY, PUT),
            "asset": (GET, PUT, UPDATE, DELETE),
        },
        indexes={"job": ("*",), "run": ("*",), "slice": ("*",), "asset": ("*",)},
        sends=("start", "slice"),
        objects={
            ASSETS_PREFIX: ("s3:PutObject", "s3:DeleteObject"),
            RESULTS_PREFIX: ("s3:GetObject",),
            # GET: the logs route; PUT: remote agents' output, reported through the API
            LOGS_PREFIX: ("s3:GetObject", "s3:PutObject"),
        },
        lists_bucket=True,
        targets=("stop", "list"),
        publishes=True,
        reads_secrets=True,  # a command's env, resolved when an agent takes its task
    ),
    # the tick (due jobs, their runs) and the sweep (stalled runs and slices re-sent,
    # slices given up on, alerts)
    SUPERVISOR: Grants(
        tables={
            "job": (UPDATE,),
            "run": (GET, PUT, UPDATE, QUERY),  # QUERY: an ended run's neighbours (retention)
            "slice": (UPDATE, QUERY, GET),  # GET: a command run's refill offers its slices
            # BatchGetItem: the agents' sweep reads every agent (lost ones are alerted)
            "supervisor": (GET, PUT, UPDATE, "dynamodb:BatchGetItem"),
            # alerts; and notifications: emitted (missed slots, alerts), claimed, settled
            "alert": (PUT, UPDATE, DELETE, QUERY, CHECK),
        },
        indexes={"job": ("due-index-v2",), "run": ("sweep-index",)},
        sends=("start", "slice"),
        publishes=True,
        targets=("stop",),
        reads_secrets=True,  # webhooks' signing secrets
        notifies=True,
    ),
    # claims and slices runs, runs one-slice runs (asset ops, result parts); a failed
    # one-slice run's retry and an early start are sent again, and the end of a run nudges
    # its job's buffered run (a job read, a start sent)
    # (a command run's slices are offered to agents: read, and kept as tasks in the
    # supervisor table)
    START_WORKER: Grants(
        tables={
            "job": (GET, UPDATE),
            "run": (GET, UPDATE, QUERY),  # QUERY: an ended run's neighbours (retention)
            "slice": (PUT, GET),
            "asset": (GET,),
            "supervisor": (PUT, UPDATE),
            "alert": (PUT, CHECK),  # a run's events, into the notifications' outbox
        },
        sends=("start", "slice"),
        consumes="start",
        objects={
            ASSETS_PREFIX: ("s3:GetObject",),
            RESULTS_PREFIX: ("s3:PutObject",),
            LOGS_PREFIX: ("s3:PutObject",),
        },
        reads_secrets=True,
        targets=("run", "stop", "list"),
    ),
    # claims and finishes slices, hands out the next, finishes runs (as the start worker)
    SLICE_WORKER: Grants(
        tables={
            "job": (GET, UPDATE),
            "run": (GET, UPDATE, QUERY),  # QUERY: an ended run's neighbours (retention)
            "slice": (UPDATE,),
            "asset": (GET,),
            "alert": (PUT, CHECK),  # a run's events, into the notifications' outbox
        },
        sends=("start", "slice"),
        consumes="slice",
        objects={
            ASSETS_PREFIX: ("s3:GetObject",),
            RESULTS_PREFIX: ("s3:PutObject",),
            LOGS_PREFIX: ("s3:PutObject",),
        },
        reads_secrets=True,
        targets=("run", "stop", "list"),
    ),
}
SQS_SEND_ACTIONS = ("sqs:GetQueueUrl", "sqs:SendMessage")
# what the SQS event source mapping does with the function's role
SQS_CONSUME_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
# the secrets that jobs name (chalicelib/adapters/secrets.py), only under the stage's prefix;
# a SecureString under a customer managed KMS key also needs kms:Decrypt on that key
SSM_ACTIONS = ("ssm:GetParameter",)
SECRETS_MANAGER_ACTIONS = ("secretsmanager:GetSecretValue",)
LOGS_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents")


def _arn(logical: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical, "Arn"]}


def _under(logical: str, path: str) -> dict[str, Any]:
    return {"Fn::Sub": f"${{{logical}.Arn}}/{path}"}


# the queue each kind of nudge goes to -> its logical name in the template
QUEUE_OF = {"start": WORKER_QUEUES[START_WORKER], "slice": WORKER_QUEUES[SLICE_WORKER]}
# the functions' log groups (Lambda writes them with the role), in the stack's region and
# account; a function's own name is not known to its role (the function refers to the role)
LOG_GROUPS = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/aws/lambda/*"
REGIONAL, HERE = "arn:${AWS::Partition}", "${AWS::Region}:${AWS::AccountId}"


def _table_statements(grants: Grants, models: Models) -> list[dict[str, Any]]:
    by_actions: dict[tuple[str, ...], list[str]] = {}
    for model_field, actions in grants.tables.items():
        by_actions.setdefault(tuple(sorted(actions)), []).append(table_logical_name(model_field))
    statements = [
        {"Sid": f"Tables{i}", "Action": list(actions), "Resource": [_arn(t) for t in sorted(ts)]}
        for i, (actions, ts) in enumerate(sorted(by_actions.items()), 1)
    ]
    indexes = []
    for model_field, names in grants.indexes.items():
        model = getattr(models, model_field)
        for index in index_names(model) if names == ("*",) else names:
            if index not in index_names(model):
                raise ValueError(f"{model.__name__} has no index {index}")
            indexes.append(_under(table_logical_name(model_field), f"index/{index}"))
    if indexes:
        statements.append({"Sid": "Indexes", "Action": [QUERY], "Resource": indexes})
    return statements


def _other_statements(grants: Grants) -> list[dict[str, Any]]:
    statements: list[dict[str, Any]] = []
    if grants.sends:
        queues = [_arn(QUEUE_OF[kind]) for kind in grants.sends]
        statements.append(
            {"Sid": "SendNudges", "Action": list(SQS_SEND_ACTIONS), "Resource": queues}
        )
    if grants.consumes:
        statements.append(
            {
                "Sid": "ConsumeNudges",
                "Action": list(SQS_CONSUME_ACTIONS),
                "Resource": _arn(QUEUE_OF[grants.consumes]),
            }
        )
    for i, (prefix, actions) in enumerate(sorted(grants.objects.items()), 1):
        statements.append(
            {
                "Sid": f"Objects{i}",
                "Action": list(actions),
                "Resource": _under("ResultsBucket", f"{prefix}*"),
            }
        )
    if grants.lists_bucket:  # only under the results' and the run logs' prefixes
        statements.append(
            {
                "Sid": "ListResults",
                "Action": ["s3:ListBucket"],
                "Resource": _arn("ResultsBucket"),
                "Condition": {
                    "StringLike": {"s3:prefix": [f"{RESULTS_PREFIX}*", f"{LOGS_PREFIX}*"]}
                },
            }
        )
    if grants.publishes:  # a topic's Ref is its ARN
        statements.append(
            {"Sid": "Alerts", "Action": ["sns:Publish"], "Resource": {"Ref": "AlertsTopic"}}
        )
    return statements


def iam_policy(config: Mapping[str, Any], stage: str, function: str) -> dict[str, Any]:
    """The policy document of ``function``'s role in ``stage`` (``.chalice/<file>``). Every
    resource is a reference to the stack's own (``Fn::GetAtt``, ``Ref``), as the functions'
    environment is: the role reaches exactly the tables, queues, bucket and topic of its
    stack, whatever their names, and CloudFormation creates them first."""
    grants = FUNCTION_GRANTS[function]
    statements: list[dict[str, Any]] = [
        {"Sid": "Logs", "Action": list(LOGS_ACTIONS), "Resource": {"Fn::Sub": LOG_GROUPS}},
        *_table_statements(grants, build_models(stage_settings(config, stage))),
        *_other_statements(grants),
        *(
            _secrets_statements(stage_settings(config, stage).secrets_prefix)
            if grants.reads_secrets
            else []
        ),
        *target_statements(stage_settings(config, stage).targets_allow, grants.targets),
        *(
            _notify_statements(stage_settings(config, stage).notify_topics)
            if grants.notifies
            else []
        ),
    ]
    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": s.pop("Sid"), "Effect": "Allow", **s} for s in statements],
    }


def _secrets_statements(prefix: str) -> list[dict[str, Any]]:
    """Reading the secrets under the stage's prefix: an SSM parameter's ARN drops the name's
    leading slash; a secret's ARN ends in `-` and six random characters."""
    return [
        {
            "Sid": "SecretParameters",
            "Action": list(SSM_ACTIONS),
            "Resource": {"Fn::Sub": f"{REGIONAL}:ssm:{HERE}:parameter/{prefix.lstrip('/')}*"},
        },
        {
            "Sid": "Secrets",
            "Action": list(SECRETS_MANAGER_ACTIONS),
            "Resource": {"Fn::Sub": f"{REGIONAL}:secretsmanager:{HERE}:secret:{prefix}*"},
        },
    ]


# a target kind -> (the actions its op makes, the ARN of one allowed name under REGIONAL)
TARGET_GRANTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lambda": (
        ("lambda:InvokeFunction",),
        (f"lambda:{HERE}:function:{{}}", f"lambda:{HERE}:function:{{}}:*"),
    ),
    "sqs": (SQS_SEND_ACTIONS, (f"sqs:{HERE}:{{}}",)),
    "sns": (("sns:Publish",), (f"sns:{HERE}:{{}}",)),
    "eventbridge": (("events:PutEvents",), (f"events:{HERE}:event-bus/{{}}",)),
}


def _call_statements(kind: str, names: list[str], uses: tuple[str, ...]) -> list[dict[str, Any]]:
    if "run" not in uses:
        return []
    actions, arns = TARGET_GRANTS[kind]
    resources = [{"Fn::Sub": f"{REGIONAL}:{arn.replace('{}', n)}"} for n in names for arn in arns]
    return [{"Sid": f"Targets{cfn_name(kind)}", "Action": list(actions), "Resource": resources}]


def _execution_statements(machines: list[str], uses: tuple[str, ...]) -> list[dict[str, Any]]:
    executions = [m.replace(":stateMachine:", ":execution:", 1) + ":*" for m in machines]
    out: list[dict[str, Any]] = []
    if "run" in uses:
        out.append(
            {"Sid": "StartExecutions", "Action": ["states:StartExecution"], "Resource": machines}
        )
        out.append(
            {
                "Sid": "CheckExecutions",
                "Action": ["states:DescribeExecution"],
                "Resource": executions,
            }
        )
    if "stop" in uses:
        out.append(
            {"Sid": "StopExecutions", "Action": ["states:StopExecution"], "Resource": executions}
        )
    return out


def _cluster_arn(ref: str) -> Any:
    return ref if ref.startswith("arn:") else {"Fn::Sub": f"{REGIONAL}:ecs:{HERE}:cluster/{ref}"}


def _tasks_of(ref: str) -> Any:
    if ref.startswith("arn:"):
        return ref.replace(":cluster/", ":task/", 1) + "/*"
    return {"Fn::Sub": f"{REGIONAL}:ecs:{HERE}:task/{ref}/*"}


def _task_statements(clusters: list[str], uses: tuple[str, ...]) -> list[dict[str, Any]]:
    """RunTask of a task definition with roles also needs iam:PassRole on them: the deployer
    grants that."""
    tasks = [_tasks_of(c) for c in clusters]
    out: list[dict[str, Any]] = []
    if "run" in uses:
        out.append(
            {
                "Sid": "RunTasks",
                "Action": ["ecs:RunTask"],
                "Resource": "*",
                "Condition": {"ArnLike": {"ecs:cluster": [_cluster_arn(c) for c in clusters]}},
            }
        )
        out.append({"Sid": "CheckTasks", "Action": ["ecs:DescribeTasks"], "Resource": tasks})
    if "stop" in uses:
        out.append({"Sid": "StopTasks", "Action": ["ecs:StopTask"], "Resource": tasks})
    return out


def _bucket_statements(buckets: list[str], uses: tuple[str, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if "list" in uses:
        out.append(
            {
                "Sid": "ListDataBuckets",
                "Action": ["s3:ListBucket"],
                "Resource": [{"Fn::Sub": f"{REGIONAL}:s3:::{b}"} for b in buckets],
            }
        )
    if "run" in uses:
        out.append(
            {
                "Sid": "DataObjects",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": [{"Fn::Sub": f"{REGIONAL}:s3:::{b}/*"} for b in buckets],
            }
        )
    return out


def target_statements(
    allow: Sequence[tuple[str, str]], uses: tuple[str, ...]
) -> list[dict[str, Any]]:
    """What a function may do with the targets the stage allows (CADENZA_TARGETS_ALLOW, one
    list for every kind): for each kind with an allowed name, the statements of its `uses`
    ("run", "stop", "list") on exactly those names (a pattern's `*` is IAM's), in the
    stage's account and region unless an ARN says otherwise. `http` needs no grant;
    nothing allowed, no statement."""
    statements: list[dict[str, Any]] = []
    for kind in ("lambda", "sqs", "sns", "eventbridge", "stepfunctions", "ecs", "s3"):
        names = sorted({name for k, name in allow if k == kind})
        if not names:
            continue
        if kind in TARGET_GRANTS:
            statements += _call_statements(kind, names, uses)
        else:
            build = {
                "stepfunctions": _execution_statements,
                "ecs": _task_statements,
                "s3": _bucket_statements,
            }[kind]
            statements += build(names, uses)
    return statements


def _notify_statements(topics: Sequence[str]) -> list[dict[str, Any]]:
    """Publishing notifications to the topics a stage lets jobs name (none: no statement)."""
    if not topics:
        return []
    return [{"Sid": "NotificationTopics", "Action": ["sns:Publish"], "Resource": list(topics)}]


def function_policy_file(stage: str, function: str) -> str:
    """The policy file's name, as ``lambda_functions.<function>.iam_policy_file`` says."""
    return f"policy-{stage}-{function}.json"


def policy_path(stage: str, function: str) -> Path:
    return Path(".chalice") / function_policy_file(stage, function)


def check_policy_files(config: Mapping[str, Any], stage: str) -> None:
    """Each function of ``stage`` names its own generated policy file in
    .chalice/config.json; nothing falls back to a stage-wide one."""
    functions = config["stages"][stage].get("lambda_functions", {})
    for function in FUNCTIONS:
        named = functions.get(function, {}).get("iam_policy_file")
        if named != function_policy_file(stage, function):
            raise ValueError(
                f"stage {stage}: lambda_functions.{function}.iam_policy_file is {named!r}, "
                f"expected {function_policy_file(stage, function)!r}"
            )


def dumps(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def generated_files(project_dir: Path = PROJECT_DIR) -> dict[Path, str]:
    """Every generated file (relative path -> text): the merge template and the policies."""
    config = load_chalice_config(project_dir)
    files = {TEMPLATE_PATH: dumps(build_template(config))}
    for stage in stages(config):
        check_policy_files(config, stage)
        for function in FUNCTIONS:
            files[policy_path(stage, function)] = dumps(iam_policy(config, stage, function))
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cadenza_tools.infra",
        description="Print the merge template for `chalice package --merge-template` "
        "(default), a stage's IAM policy, or write/check every generated file.",
    )
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR)
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--policy",
        nargs=2,
        metavar=("STAGE", "FUNCTION"),
        help=f"print the IAM policy of FUNCTION ({', '.join(FUNCTIONS)}) in STAGE",
    )
    group.add_argument("--write", action="store_true", help="write every generated file")
    group.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    args = parser.parse_args(argv)
    project_dir: Path = args.project_dir
    if args.policy:
        stage, function = args.policy
        sys.stdout.write(dumps(iam_policy(load_chalice_config(project_dir), stage, function)))
        return 0
    if not (args.write or args.check):
        sys.stdout.write(dumps(build_template(load_chalice_config(project_dir))))
        return 0
    stale = []
    for rel, text in generated_files(project_dir).items():
        path = project_dir / rel
        if path.exists() and path.read_text() == text:
            continue
        stale.append(str(rel))
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        sys.stderr.write("stale, regenerate with `python -m cadenza_tools.infra --write`: ")
        sys.stderr.write(", ".join(stale) + "\n")
        return 1
    for name in stale:
        sys.stderr.write(f"wrote {name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
