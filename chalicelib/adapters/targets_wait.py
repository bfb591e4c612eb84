"""The WaitTargets port on Step Functions and ECS, and the ObjectStore port on S3."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.ports import ObjectStore, WaitTargets

ENDED = {"ExecutionDoesNotExist", "InvalidArn"}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}


class AccessDenied(Exception):
    """AWS refused a call: the functions' IAM policy does not allow it. Its message names
    the call, not the role (AWS's own message names this stack's role ARN)."""


def _denied(err: ClientError, call: str) -> Exception:
    if err.response.get("Error", {}).get("Code") in DENIED:
        return AccessDenied(
            f"{call}: access denied by AWS (this stage's IAM policy does not allow it; "
            "see CADENZA_ALLOW_* in docs/targets-waiting.md)"
        )
    return err


class AwsWaitTargets(WaitTargets):
    """boto3 clients for `stepfunctions` and `ecs`."""

    def __init__(self, sfn: Any, ecs: Any) -> None:
        self.sfn, self.ecs = sfn, ecs

    @staticmethod
    def _call(client: Any, call: str, **params: Any) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = getattr(client, call)(**params)
        except ClientError as err:
            raise _denied(err, call) from None
        return answer

    def start_execution(self, state_machine_arn: str, name: str, input_json: str) -> dict[str, Any]:
        return self._call(
            self.sfn,
            "start_execution",
            stateMachineArn=state_machine_arn,
            name=name,
            input=input_json,
        )

    def describe_execution(self, execution_arn: str) -> dict[str, Any]:
        return self._call(self.sfn, "describe_execution", executionArn=execution_arn)

    def stop_execution(self, execution_arn: str, cause: str) -> None:
        try:
            self._call(self.sfn, "stop_execution", executionArn=execution_arn, cause=cause[:32768])
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ENDED:
                raise

    def run_task(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._call(self.ecs, "run_task", **request)

    def describe_task(self, cluster: str, task_arn: str) -> dict[str, Any] | None:
        answer = self._call(self.ecs, "describe_tasks", cluster=cluster, tasks=[task_arn])
        tasks = answer.get("tasks") or []
        return dict(tasks[0]) if tasks else None

    def stop_task(self, cluster: str, task_arn: str, reason: str) -> None:
        self._call(self.ecs, "stop_task", cluster=cluster, task=task_arn, reason=reason[:1024])


class S3ObjectStore(ObjectStore):
    """A boto3 S3 client, any bucket (the ops check the stage's allow-list first)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def list_objects(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        try:
            for page in pages:
                out.extend((str(o["Key"]), int(o["Size"])) for o in page.get("Contents") or [])
        except ClientError as err:
            raise _denied(err, "list_objects_v2") from None
        return out

    def get_object(self, bucket: str, key: str, byte_range: tuple[int, int] | None) -> bytes:
        extra = {} if byte_range is None else {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"}
        try:
            body: bytes = self.client.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        except ClientError as err:
            raise _denied(err, "get_object") from None
        return body

    def put_object(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        except ClientError as err:
            raise _denied(err, "put_object") from None
