"""Warming DynamoDB Local up before the local stack takes work (cadenza_tools.local)."""

from __future__ import annotations

import boto3
import pytest

from cadenza_tools.local.warm_up import MIN_ROUNDS, warm_up

pytestmark = pytest.mark.ddblocal


def _tables(endpoint: str) -> set[str]:
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    return {t for t in client.list_tables()["TableNames"] if t.startswith("cadenza-warm-up-")}


def test_a_warm_up_runs_its_rounds_until_one_is_fast_and_leaves_no_table(
    ddb_local: str,
) -> None:
    done = warm_up(ddb_local, budget_s=120.0, fast_ms=60_000.0)
    assert done.rounds == MIN_ROUNDS
    assert done.warm
    assert _tables(ddb_local) == set()


def test_a_warm_up_stops_at_its_budget(ddb_local: str) -> None:
    done = warm_up(ddb_local, budget_s=0.0)
    assert (done.rounds, done.warm) == (0, False)
    assert _tables(ddb_local) == set()
