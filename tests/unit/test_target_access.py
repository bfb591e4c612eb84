"""The stage's one allow-list (`TargetAccess`) for every kind of target: names, patterns,
a state machine by name or ARN, a cluster by name or ARN, and the refusal naming the
setting to change."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.config import Settings
from chalicelib.ops.targets.base import NotAllowed, TargetAccess

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:nightly"
CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/batch"


def _none(service: str, timeout: float) -> Any:
    raise AssertionError("no client")


def _access(allow: str) -> TargetAccess:
    return TargetAccess(Settings.from_env({"CADENZA_TARGETS_ALLOW": allow}).targets_allow, _none)


def test_a_state_machine_by_its_arn_its_name_or_a_pattern() -> None:
    access = _access(f"stepfunctions:{MACHINE},stepfunctions:arn:aws:states:*:stateMachine:etl-*")
    assert access.state_machine("nightly") == MACHINE
    assert access.state_machine(MACHINE) == MACHINE
    other = "arn:aws:states:us-east-1:123456789012:stateMachine:etl-daily"
    assert access.state_machine(other) == other
    with pytest.raises(NotAllowed, match="'etl-daily'"):  # a pattern names no ARN to call
        access.state_machine("etl-daily")
    with pytest.raises(NotAllowed, match="add it to CADENZA_TARGETS_ALLOW"):
        access.state_machine(MACHINE.replace("nightly", "weekly"))


def test_a_cluster_by_name_or_arn_and_a_bucket_by_pattern() -> None:
    access = _access(f"ecs:{CLUSTER},ecs:jobs-*,s3:acme-*")
    assert access.cluster("batch") == "batch"  # the name of an allowed ARN
    assert access.cluster(CLUSTER) == CLUSTER
    assert access.cluster("jobs-eu") == "jobs-eu"
    with pytest.raises(NotAllowed):
        access.cluster(CLUSTER.replace("123456789012", "999999999999"))
    with pytest.raises(NotAllowed):
        access.cluster("other")
    assert access.bucket("acme-exports") == "acme-exports"
    with pytest.raises(NotAllowed, match="s3 target 'payroll'"):
        access.bucket("payroll")


def test_kinds_do_not_mix() -> None:
    access = _access("s3:batch,http:api.example.com")
    with pytest.raises(NotAllowed):
        access.cluster("batch")
    assert access.allows("http", "API.example.com")
    assert not access.allows("sqs", "api.example.com")
