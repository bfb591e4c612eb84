"""The stepfunctions and ecs targets through their AWS adapter, on moto. Moto runs no state
machine's steps by default (an execution stays RUNNING until stopped) and no ECS task (a
test sets its end in moto's backend): what is tested is the calls, the wait, and its end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.ecs.models import ecs_backends

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.adapters.targets_wait import AwsWaitTargets
from chalicelib.bootstrap import Container
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import ExStatus
from chalicelib.ops.clients import TargetClients, use
from chalicelib.ops.targets import base as target_access
from chalicelib.ports import FakeClock
from tests.conftest import moto_container
from tests.conftest import test_settings as make_settings
from tests.helpers import deliver_next

ROLE = "arn:aws:iam::123456789012:role/sfn"
PASS = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}


@pytest.fixture
def env(aws: None, clock: FakeClock, queue: MemoryQueue) -> Iterator[tuple[Container, str]]:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    ecs = boto3.client("ecs", region_name="us-east-1")
    arn = sfn.create_state_machine(name="nightly", definition=json.dumps(PASS), roleArn=ROLE)[
        "stateMachineArn"
    ]
    ecs.create_cluster(clusterName="batch")
    ecs.register_task_definition(
        family="report", containerDefinitions=[{"name": "app", "image": "busybox", "memory": 64}]
    )
    for c in moto_container(make_settings(), clock, queue):
        use(TargetClients(AwsWaitTargets(sfn, ecs)))
        allow = (("stepfunctions", arn), ("ecs", "batch"))
        target_access.use(target_access.TargetAccess(allow, target_access.no_client))
        yield c, arn
        use(TargetClients())
        target_access.use(None)


def _run(c: Container, last: dict[str, Any]) -> Run:
    job, _ = c.jobs.submit({"name": "m", "operations": [{"_op": "noop"}, last]}, start=False)
    return c.jobs.start_run(job.job_id)


def _status(c: Container, run: Run) -> ExStatus:
    current = c.store.get_run(run.job_id, run.slot)
    assert current is not None
    return current.status


def test_an_execution_waited_for_and_aborted_fails_the_run(
    env: tuple[Container, str], queue: MemoryQueue, clock: FakeClock
) -> None:
    c, machine = env
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    run = _run(
        c, {"_op": "stepfunctions", "state_machine": "nightly", "input": {"a": 1}, "wait": True}
    )
    assert [deliver_next(c, queue, clock), deliver_next(c, queue, clock)] == ["running", "waiting"]
    [ex] = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert ex["status"] == "RUNNING"
    assert json.loads(sfn.describe_execution(executionArn=ex["executionArn"])["input"]) == {"a": 1}
    assert deliver_next(c, queue, clock) == "waiting"
    assert _status(c, run) == ExStatus.running
    sfn.stop_execution(executionArn=ex["executionArn"], error="Oops", cause="by hand")
    assert deliver_next(c, queue, clock) == "failed"
    assert _status(c, run) == ExStatus.failed
    [sl] = c.store.list_slices(run.ex_id)
    assert sl.error is not None and "TargetFailed: execution ABORTED" in sl.error


def test_the_same_name_and_input_start_one_execution(env: tuple[Container, str]) -> None:
    _, machine = env
    targets = AwsWaitTargets(
        boto3.client("stepfunctions", region_name="us-east-1"),
        boto3.client("ecs", region_name="us-east-1"),
    )
    first = targets.start_execution(machine, "k" * 32, "{}")
    again = targets.start_execution(machine, "k" * 32, "{}")
    assert first["executionArn"] == again["executionArn"]
    targets.stop_execution(first["executionArn"], "done")
    assert targets.describe_execution(first["executionArn"])["status"] == "ABORTED"


@pytest.mark.parametrize(("code", "status"), [(0, ExStatus.completed), (2, ExStatus.failed)])
def test_a_task_stopped_in_moto_ends_the_run_by_its_exit_code(
    env: tuple[Container, str], queue: MemoryQueue, clock: FakeClock, code: int, status: ExStatus
) -> None:
    """(Moto needs container instances for EC2 tasks, and ignores `clientToken`.)"""
    c, _ = env
    last = {"_op": "ecs", "cluster": "batch", "task_definition": "report", "wait": True}
    run = _run(c, {**last, "launch_type": "FARGATE", "check_seconds": 5})
    assert [deliver_next(c, queue, clock), deliver_next(c, queue, clock)] == ["running", "waiting"]
    [task] = ecs_backends["123456789012"]["us-east-1"].tasks["batch"].values()
    assert task.started_by == "cadenza"
    assert deliver_next(c, queue, clock) == "waiting"
    task.last_status = "STOPPED"
    task.containers[0].exitCode = code
    assert deliver_next(c, queue, clock) == ("completed" if code == 0 else "failed")
    assert _status(c, run) == status
