"""``cadenza deploy`` and ``cadenza destroy``: a stage's CloudFormation stack, end to end.

Deploy: ``chalice package --stage S --merge-template infra/resources.json`` (a SAM
template and the deployment zip), an artifact bucket per account and region (created if
absent), the zip and the template uploaded there, the SAM transform expanded here with
``samtranslator`` (the library behind CloudFormation's ``AWS::Serverless`` transform; the
result deploys on AWS, on moto and on LocalStack alike), then a change set, created,
executed and waited for, as ``aws cloudformation deploy`` does. The template is pinned to
the stage it was packaged for: its ``Stage`` parameter allows only that stage, so a prod
package deployed with ``Stage=dev`` is refused by CloudFormation before anything changes.

Destroy: deletes the stack. Tables and the results bucket are kept (their
``DeletionPolicy`` is ``RetainExceptOnCreate``) and listed, unless ``delete_data`` is set;
then their deletion protection is lifted and they are deleted, every object version too.

This module is a build tool, never shipped (``app.py`` does not import it).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError, WaiterError
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.utils.py27hash_fix import (
    to_py27_compatible_template,
    undo_mark_unicode_str_in_template,
)

from cadenza_tools import infra

ARTIFACT_PREFIX = "cadenza-artifacts"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
# the stack's outputs a user needs after a deploy
URL_OUTPUT, TOPIC_OUTPUT, BUCKET_OUTPUT = "EndpointURL", "AlertsTopicArn", "ResultsBucketName"
DATA_TYPES = ("AWS::DynamoDB::Table", "AWS::S3::Bucket")
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
WAIT = {"Delay": 2, "MaxAttempts": 900}  # up to 30 minutes, polled every 2 s

Say = Callable[[str], None]


class DeployError(RuntimeError):
    """A deploy or destroy that stopped; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    """Where a stage's stack goes: an account's region, or an emulator's endpoint."""

    stage: str
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    stack_name: str | None = None

    @property
    def stack(self) -> str:
        return self.stack_name or f"cadenza-{self.stage}"


@dataclass
class Aws:
    """The clients a deploy uses, from one session."""

    target: Target
    session: Any = field(init=False)

    def __post_init__(self) -> None:
        self.session = boto3.session.Session(
            profile_name=self.target.profile, region_name=self.target.region
        )
        if not self.session.region_name:
            raise DeployError("no AWS region: pass --region or set AWS_DEFAULT_REGION")

    @property
    def region(self) -> str:
        return str(self.session.region_name)

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.target.endpoint_url)

    def account(self) -> str:
        return str(self.client("sts").get_caller_identity()["Account"])


# ---- packaging --------------------------------------------------------------------------------


def package(project_dir: Path, stage: str, out_dir: Path, say: Say) -> Path:
    """``chalice package`` of ``stage`` into ``out_dir`` (``sam.json``, ``deployment.zip``),
    after checking that the generated infra files are current."""
    if infra.main(["--project-dir", str(project_dir), "--check"]) != 0:
        raise DeployError("generated files are stale: run `python -m cadenza_tools.infra --write`")
    if stage not in infra.stages(infra.load_chalice_config(project_dir)):
        raise DeployError(f"no stage {stage!r} in .chalice/config.json")
    chalice = Path(sys.executable).parent / "chalice"
    command = [str(chalice) if chalice.exists() else "chalice", "package", "--stage", stage]
    command += ["--merge-template", str(infra.TEMPLATE_PATH), str(out_dir)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENZA_")}
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # chalice package insists on one
    say(f"packaging stage {stage} (chalice package; it downloads Linux wheels from PyPI)")
    proc = subprocess.run(
        command, cwd=project_dir, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise DeployError(f"chalice package failed:\n{proc.stdout}{proc.stderr}")
    return out_dir


# ---- the template -----------------------------------------------------------------------------


def pin_stage(sam: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """The packaged template, taking only the stage it was packaged for: the policies, the
    function settings and the secrets prefix were read from that stage's configuration."""
    out = copy.deepcopy(dict(sam))
    allowed = out["Parameters"][infra.STAGE_PARAMETER]["AllowedValues"]
    if stage not in allowed:
        raise DeployError(f"the template has no stage {stage!r} (it has {allowed})")
    out["Parameters"][infra.STAGE_PARAMETER].update(
        AllowedValues=[stage],
        Default=stage,
        ConstraintDescription=f"this template was packaged for stage {stage}: "
        f"package the stage you deploy (cadenza deploy --stage STAGE)",
    )
    out["Description"] = f"Cadenza, stage {stage} (cadenza deploy)"
    return out


def with_code(sam: Mapping[str, Any], bucket: str, key: str) -> dict[str, Any]:
    """Every function's ``CodeUri`` pointed at the uploaded deployment zip."""
    out = copy.deepcopy(dict(sam))
    for resource in out["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://{bucket}/{key}"
    return out


def expand(sam: Mapping[str, Any], stage: str, region: str) -> dict[str, Any]:
    """The SAM template as plain CloudFormation (the ``AWS::Serverless`` transform)."""
    # every function's role is Chalice's own with inline policies: no managed policy to look
    # up; the session gives the region (and the partition) to the pseudo parameters
    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name=region))
    values: dict[str, Any] = {infra.STAGE_PARAMETER: stage}
    template = copy.deepcopy(dict(sam))
    to_py27_compatible_template(template, values)  # as samtranslator's own transform() does
    expanded = translator.translate(template, parameter_values=values, get_managed_policy_map=dict)
    result: dict[str, Any] = undo_mark_unicode_str_in_template(expanded)
    return result


# ---- artifacts ----------------------------------------------------------------------------------


def artifact_bucket(aws: Aws, say: Say) -> str:
    """``cadenza-artifacts-<account>-<region>``, created (private, encrypted) if absent."""
    s3 = aws.client("s3")
    name = f"{ARTIFACT_PREFIX}-{aws.account()}-{aws.region}"
    try:
        s3.head_bucket(Bucket=name)
        return name
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise DeployError(f"artifact bucket {name}: {exc}") from exc
    say(f"creating the artifact bucket {name}")
    create: dict[str, Any] = {"Bucket": name}
    if aws.region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
    s3.create_bucket(**create)
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    return name


def upload(aws: Aws, bucket: str, prefix: str, body: bytes, suffix: str) -> str:
    """Put ``body`` under a key named by its hash (an unchanged zip is not sent twice)."""
    s3 = aws.client("s3")
    key = f"{prefix}/{hashlib.sha256(body).hexdigest()}{suffix}"
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return key


def template_url(aws: Aws, bucket: str, key: str) -> str:
    """The template's S3 URL (an emulator's CloudFormation reads this form from its S3)."""
    return f"https://{bucket}.s3.{aws.region}.amazonaws.com/{key}"


# ---- the stack --------------------------------------------------------------------------------


def stack_status(cfn: Any, stack: str) -> str | None:
    try:
        stacks = cfn.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return str(stacks[0]["StackStatus"]) if stacks else None


def _failures(cfn: Any, stack: str) -> str:
    events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    lines = [
        f"  {e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
        for e in events
        if e["ResourceStatus"].endswith("FAILED")
    ]
    return "\n".join(lines[:10]) or "  (no failed resource events)"


def _wait(cfn: Any, waiter: str, stack: str) -> None:
    try:
        cfn.get_waiter(waiter).wait(StackName=stack, WaiterConfig=WAIT)
    except WaiterError as exc:
        raise DeployError(f"stack {stack}: {waiter} failed:\n{_failures(cfn, stack)}") from exc


def apply_change_set(cfn: Any, target: Target, url: str, say: Say) -> bool:
    """Create and execute a change set (create or update); False if nothing changed."""
    status = stack_status(cfn, target.stack)
    if status == "ROLLBACK_COMPLETE":  # a failed first create: it must go before a new one
        say(f"stack {target.stack} failed to create before: deleting it first")
        cfn.delete_stack(StackName=target.stack)
        _wait(cfn, "stack_delete_complete", target.stack)
        status = None
    kind = "CREATE" if status in (None, "REVIEW_IN_PROGRESS") else "UPDATE"
    name = f"cadenza-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    cfn.create_change_set(
        StackName=target.stack,
        ChangeSetName=name,
        ChangeSetType=kind,
        TemplateURL=url,
        Parameters=[{"ParameterKey": infra.STAGE_PARAMETER, "ParameterValue": target.stage}],
        Capabilities=CAPABILITIES,
        Tags=[{"Key": "cadenza:stage", "Value": target.stage}],
    )
    try:
        cfn.get_waiter("change_set_create_complete").wait(
            StackName=target.stack, ChangeSetName=name, WaiterConfig=WAIT
        )
    except WaiterError as exc:
        described = cfn.describe_change_set(StackName=target.stack, ChangeSetName=name)
        reason = str(described.get("StatusReason", ""))
        if any(text in reason for text in NO_CHANGES):
            cfn.delete_change_set(StackName=target.stack, ChangeSetName=name)
            return False
        raise DeployError(f"change set {name} failed: {reason}") from exc
    changes = cfn.describe_change_set(StackName=target.stack, ChangeSetName=name)["Changes"]
    say(f"{kind.lower()} {target.stack}: {len(changes)} resource changes")
    cfn.execute_change_set(StackName=target.stack, ChangeSetName=name)
    _wait(cfn, f"stack_{kind.lower()}_complete", target.stack)
    return True


def outputs(cfn: Any, stack: str) -> dict[str, str]:
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def first_steps(target: Target, found: Mapping[str, str]) -> str:
    """What an admin does after the first deploy (printed by ``cadenza deploy``)."""
    url = found.get(URL_OUTPUT, "<the stack's EndpointURL output>")
    topic = found.get(TOPIC_OUTPUT, "<the stack's AlertsTopicArn output>")
    return "\n".join(
        [
            f"API: {url}",
            "Next:",
            f"  export CADENZA_URL={url}",
            "  cadenza supervisor state      # 503 until the one-minute schedule fired once",
            "  # callers need execute-api:Invoke on the API; admins are CADENZA_ADMINS in",
            f"  # .chalice/config.json (stage {target.stage}), then deploy again",
            "  # alarms and alerts go to the alerts topic: subscribe to it, e.g.",
            f"  aws sns subscribe --topic-arn {topic} --protocol email "
            "--notification-endpoint you@example.com",
        ]
    )


@dataclass(frozen=True)
class Deployed:
    stack: str
    changed: bool
    outputs: Mapping[str, str]


def deploy(
    project_dir: Path, target: Target, say: Say, *, package_dir: Path | None = None
) -> Deployed:
    """Package (unless ``package_dir`` holds a ``chalice package`` output of the stage),
    upload, expand and deploy ``target``'s stack; the stack's outputs after it."""
    aws = Aws(target)
    out = package_dir or package(
        project_dir, target.stage, project_dir / "infra" / "out" / target.stage, say
    )
    sam = pin_stage(json.loads((out / "sam.json").read_text()), target.stage)
    bucket = artifact_bucket(aws, say)
    code = upload(aws, bucket, target.stack, (out / "deployment.zip").read_bytes(), ".zip")
    template = expand(with_code(sam, bucket, code), target.stage, aws.region)
    body = (json.dumps(template, indent=1, sort_keys=True) + "\n").encode()
    (out / "template.json").write_bytes(body)  # what was deployed, for a reader
    key = upload(aws, bucket, target.stack, body, ".template.json")
    cfn = aws.client("cloudformation")
    changed = apply_change_set(cfn, target, template_url(aws, bucket, key), say)
    if not changed:
        say(f"stack {target.stack}: no changes")
    return Deployed(target.stack, changed, outputs(cfn, target.stack))


# ---- destroy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Destroyed:
    stack: str
    kept: list[tuple[str, str]]  # (type, physical name) of the data left in the account
    deleted: list[tuple[str, str]]


def data_resources(cfn: Any, stack: str) -> list[tuple[str, str]]:
    """The stack's tables and buckets: (type, physical name)."""
    found: list[tuple[str, str]] = []
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack):
        for r in page["StackResourceSummaries"]:
            if r["ResourceType"] in DATA_TYPES and r.get("PhysicalResourceId"):
                found.append((r["ResourceType"], r["PhysicalResourceId"]))
    return sorted(found)


def unprotect_table(aws: Aws, name: str) -> None:
    ddb = aws.client("dynamodb")
    try:
        ddb.update_table(TableName=name, DeletionProtectionEnabled=False)
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 2})
    except ddb.exceptions.ResourceNotFoundException:
        return


def delete_table(aws: Aws, name: str) -> None:
    ddb = aws.client("dynamodb")
    try:
        ddb.delete_table(TableName=name)
    except ddb.exceptions.ResourceNotFoundException:
        return


def delete_bucket(aws: Aws, name: str) -> None:
    """Every object version and delete marker, then the bucket."""
    s3 = aws.client("s3")
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
            doomed = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for kind in ("Versions", "DeleteMarkers")
                for v in page.get(kind, [])
            ]
            if doomed:
                s3.delete_objects(Bucket=name, Delete={"Objects": doomed, "Quiet": True})
        s3.delete_bucket(Bucket=name)
    except s3.exceptions.NoSuchBucket:
        return


def data_exists(aws: Aws, kind: str, name: str) -> bool:
    """Whether a table or bucket of that name is there."""
    try:
        if kind == "AWS::DynamoDB::Table":
            aws.client("dynamodb").describe_table(TableName=name)
        else:
            aws.client("s3").head_bucket(Bucket=name)
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in ("ResourceNotFoundException", "404", "NoSuchBucket"):
            return False
        raise
    return True


def destroy(target: Target, say: Say, *, delete_data: bool = False) -> Destroyed:
    """Delete ``target``'s stack; its tables and bucket are kept unless ``delete_data``
    (then the tables' deletion protection is lifted first, so that a stack whose first
    create failed half-way can go too)."""
    aws = Aws(target)
    cfn = aws.client("cloudformation")
    if stack_status(cfn, target.stack) is None:
        raise DeployError(f"no stack {target.stack} in {aws.region}")
    data = data_resources(cfn, target.stack)
    tables = [name for kind, name in data if kind == "AWS::DynamoDB::Table"]
    if delete_data:
        for name in tables:
            unprotect_table(aws, name)
    say(f"deleting stack {target.stack}")
    cfn.delete_stack(StackName=target.stack)
    _wait(cfn, "stack_delete_complete", target.stack)
    if not delete_data:  # what is kept is checked: an emulator may not keep it
        gone = [(kind, name) for kind, name in data if not data_exists(aws, kind, name)]
        for kind, name in gone:
            say(f"{kind} {name} was deleted with the stack, whatever its DeletionPolicy")
        return Destroyed(target.stack, [d for d in data if d not in gone], gone)
    for kind, name in data:
        say(f"deleting {kind} {name}")
        if kind == "AWS::DynamoDB::Table":
            delete_table(aws, name)
        else:
            delete_bucket(aws, name)
    return Destroyed(target.stack, [], data)
