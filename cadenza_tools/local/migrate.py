"""Rebuild a local table whose indexes are not the model's, keeping its items.

DynamoDB cannot add, change or drop a local secondary index on an existing table (and
DynamoDB Local adds no global one to a table with items either), so a model change to a
table's indexes (the runs table's `created-index` LSI became the `job-created-index` GSI)
needs the table made again. On AWS that is a new table and a copy (docs/deploy.md); the
local stack does it itself on start (`rebuild_changed_tables`): every item is read with a
Scan (a one-off, local, never the app), written to a JSON-lines backup beside the data,
the table is deleted and created from its model, and the items are written back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from pynamodb.models import Model

from chalicelib.adapters.dynamodb.models import build_models
from chalicelib.config import Settings

log = logging.getLogger(__name__)
BATCH = 25  # BatchWriteItem's limit


Index = tuple[str, str, str, tuple[str, ...]]  # kind, name, projection type, its attributes


def _projected(projection: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    kind = str(projection.get("ProjectionType", "ALL"))
    return kind, tuple(sorted(str(a) for a in projection.get("NonKeyAttributes", [])))


def _indexes(described: Mapping[str, Any]) -> set[Index]:
    table = described["Table"]
    return {
        (kind, str(i["IndexName"]), *_projected(i.get("Projection", {})))
        for kind, key in (("global", "GlobalSecondaryIndexes"), ("local", "LocalSecondaryIndexes"))
        for i in table.get(key, [])
    }


def model_indexes(model: type[Model]) -> set[Index]:
    """The kind, name and projection of each index the model declares (a projection
    changed under the same name needs the table made again too)."""
    schema: Mapping[str, Any] = model._get_schema()
    return {
        (kind, str(i["index_name"]), *_projected(i.get("projection", {})))
        for kind, key in (
            ("global", "global_secondary_indexes"),
            ("local", "local_secondary_indexes"),
        )
        for i in schema.get(key, [])
    }


def _scan(client: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=table):
        items.extend(page.get("Items", []))
    return items


def _write(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for i in range(0, len(items), BATCH):
        pending = {table: [{"PutRequest": {"Item": it}} for it in items[i : i + BATCH]]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if pending:
                time.sleep(0.1)


def rebuild_table(client: Any, model: type[Model], backup_dir: Path) -> int:
    """Make the model's table again with its items (see the module docstring); returns
    how many items were copied. The backup stays, named after the table and the time."""
    table = str(model.Meta.table_name)
    items = _scan(client, table)
    backup_dir.mkdir(parents=True, exist_ok=True)
    backup = backup_dir / f"{table}-{int(time.time())}.jsonl"
    backup.write_text("".join(json.dumps(it, sort_keys=True) + "\n" for it in items))
    client.delete_table(TableName=table)
    client.get_waiter("table_not_exists").wait(TableName=table)
    model.create_table(wait=True, billing_mode="PAY_PER_REQUEST")
    _write(client, table, items)
    log.warning(
        "rebuilt %s with the model's indexes: %d item(s) copied (backup %s)",
        table,
        len(items),
        backup,
    )
    return len(items)


def rebuild_changed_tables(settings: Settings, backup_dir: Path) -> dict[str, int]:
    """Rebuild each existing table whose indexes differ from its model's; the tables
    rebuilt and the items each kept."""
    done: dict[str, int] = {}
    client = boto3.client(
        "dynamodb", region_name=settings.region, endpoint_url=settings.ddb_endpoint
    )
    for model in build_models(settings).all:
        if not model.exists():
            continue
        described = client.describe_table(TableName=model.Meta.table_name)
        if _indexes(described) != model_indexes(model):
            done[str(model.Meta.table_name)] = rebuild_table(client, model, backup_dir)
    return done
