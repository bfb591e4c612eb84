"""The WaitTargets port on Step Functions and ECS, and the ObjectStore port on S3."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.ports import ObjectStore, WaitTargets

ENDED = {"ExecutionDoesNotExist", "InvalidArn"}


class AwsWaitTargets(WaitTargets):
    """boto3 clients for `stepfunctions` and `ecs`."""

    def __init__(self, sfn: Any, ecs: Any) -> None:
        self.sfn, self.ecs = sfn, ecs

    def start_execution(self, state_machine_arn: str, name: str, input_json: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=input_json
        )
        return answer

    def describe_execution(self, execution_arn: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.sfn.describe_execution(executionArn=execution_arn)
        return answer

    def stop_execution(self, execution_arn: str, cause: str) -> None:
        try:
            self.sfn.stop_execution(executionArn=execution_arn, cause=cause[:32768])
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ENDED:
                raise

    def run_task(self, request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self.ecs.run_task(**request)
        return answer

    def describe_task(self, cluster: str, task_arn: str) -> dict[str, Any] | None:
        tasks = self.ecs.describe_tasks(cluster=cluster, tasks=[task_arn]).get("tasks") or []
        return dict(tasks[0]) if tasks else None

    def stop_task(self, cluster: str, task_arn: str, reason: str) -> None:
        self.ecs.stop_task(cluster=cluster, task=task_arn, reason=reason[:1024])


class S3ObjectStore(ObjectStore):
    """A boto3 S3 client, any bucket (the ops check the stage's allow-list first)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def list_objects(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            out.extend((str(o["Key"]), int(o["Size"])) for o in page.get("Contents") or [])
        return out

    def get_object(self, bucket: str, key: str, byte_range: tuple[int, int] | None) -> bytes:
        extra = {} if byte_range is None else {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"}
        body: bytes = self.client.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        return body

    def put_object(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
