"""Warming DynamoDB Local's JVM before the local stack takes work.

A freshly started DynamoDB Local answers its first transactions 10-30 times slower than
once its code is loaded and compiled (a 100-item transaction: 0.7-7 s cold, 25-100 ms
warm, docs/benchmarks.md). After a restart that is exactly when the supervisor's first
tick writes the on-time runs and the downtime's catch-up and ledger records, so the cold
JVM, not the scheduler, made those runs late. The local stack therefore runs the same kinds
of calls (conditional puts and updates in transactions, a consistent read, an index query)
on a scratch table until a round is fast, within a time budget, before it starts the
supervisor. DynamoDB on AWS has no such phase; this is the local stack's alone.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from botocore.config import Config

from cadenza_tools.local.dynamodb_local import local_client

ROUND_ITEMS = 100  # DynamoDB's most items in one transaction, as the tick writes them
JOBS_PER_ROUND = 10
MIN_ROUNDS = 5


@dataclass(frozen=True)
class WarmUp:
    """What a warm-up did: rounds run, seconds spent, the last round's milliseconds."""

    rounds: int
    seconds: float
    last_round_ms: float

    @property
    def warm(self) -> bool:
        return self.rounds >= MIN_ROUNDS


def _client(endpoint: str) -> Any:
    return local_client(endpoint, Config(retries={"max_attempts": 2}))


def _create(client: Any, table: str) -> None:
    client.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "k", "AttributeType": "S"},
            {"AttributeName": "s", "AttributeType": "S"},
            {"AttributeName": "at", "AttributeType": "N"},
        ],
        KeySchema=[
            {"AttributeName": "k", "KeyType": "HASH"},
            {"AttributeName": "s", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "at-index",
                "KeySchema": [
                    {"AttributeName": "k", "KeyType": "HASH"},
                    {"AttributeName": "at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


def _round(client: Any, table: str, n: int) -> None:
    """One round: a transaction shaped like a tick's (runs put if absent or missed, jobs
    advanced on their version), then a claim-like update, a read and a query."""
    runs = ROUND_ITEMS - JOBS_PER_ROUND
    puts = [
        {
            "Put": {
                "TableName": table,
                "Item": {
                    "k": {"S": f"job-{i % JOBS_PER_ROUND}"},
                    "s": {"S": f"{n:06d}-{i:03d}"},
                    "at": {"N": str(n * runs + i)},
                    "body": {"S": "x" * 400},
                },
                "ConditionExpression": "attribute_not_exists(s) OR #st = :missed",
                "ExpressionAttributeNames": {"#st": "status"},
                "ExpressionAttributeValues": {":missed": {"S": "missed"}},
            }
        }
        for i in range(runs)
    ]
    updates = [
        {
            "Update": {
                "TableName": table,
                "Key": {"k": {"S": f"job-{i}"}, "s": {"S": "job"}},
                "UpdateExpression": "SET v = if_not_exists(v, :zero) + :one ADD slots :slot",
                "ConditionExpression": "attribute_not_exists(v) OR v >= :zero",
                "ExpressionAttributeValues": {
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":slot": {"SS": [str(n)]},
                },
            }
        }
        for i in range(JOBS_PER_ROUND)
    ]
    client.transact_write_items(TransactItems=puts + updates)
    key = {"k": {"S": "job-0"}, "s": {"S": "job"}}
    client.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET claimed = :n",
        ConditionExpression="attribute_exists(v)",
        ExpressionAttributeValues={":n": {"N": str(n)}},
        ReturnValues="ALL_NEW",
    )
    client.get_item(TableName=table, Key=key, ConsistentRead=True)
    client.query(
        TableName=table,
        IndexName="at-index",
        KeyConditionExpression="k = :k AND #at <= :at",
        ExpressionAttributeNames={"#at": "at"},
        ExpressionAttributeValues={":k": {"S": "job-1"}, ":at": {"N": str(n * runs)}},
        Limit=25,
    )


def warm_up(endpoint: str, budget_s: float = 10.0, fast_ms: float = 150.0) -> WarmUp:
    """Run rounds on a scratch table (deleted after) until one takes under `fast_ms`
    (after at least `MIN_ROUNDS`) or `budget_s` has passed."""
    client = _client(endpoint)
    table = f"cadenza-warm-up-{uuid.uuid4().hex[:8]}"
    _create(client, table)
    began = time.monotonic()
    rounds, last_ms = 0, 0.0
    try:
        while time.monotonic() - began < budget_s:
            t = time.monotonic()
            _round(client, table, rounds)
            rounds += 1
            last_ms = (time.monotonic() - t) * 1000
            if rounds >= MIN_ROUNDS and last_ms < fast_ms:
                break
    finally:
        client.delete_table(TableName=table)
    return WarmUp(rounds, time.monotonic() - began, last_ms)
