"""Retention: the TTL attribute (`expires_at`) on finished runs, slices, ledger records and
alerts, the job's latest run kept; and the local tables rebuilt when their indexes change
(the runs table's `created-index` LSI became the `job-created-index` GSI)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from cadenza_tools.local.migrate import model_indexes, rebuild_changed_tables
from chalicelib.adapters.dynamodb.retention import DAY_SECONDS
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.config import Settings
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Run, manual_slot
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import Alert, FakeClock
from tests.conftest import T0, drain

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import (
        GlobalSecondaryIndexTypeDef,
        LocalSecondaryIndexTypeDef,
    )


def _expires(store: DynamoStore, job_id: str, slot: str) -> float | None:
    item = store.m.run.get(job_id, slot, consistent_read=True)
    return None if item.expires_at is None else item.expires_at.timestamp()


def _body(days: int | None, **kw: object) -> dict[str, object]:
    body: dict[str, object] = {"name": "kept", "operations": [{"_op": "noop"}], **kw}
    if days is not None:
        body["history_days"] = days
    return body


def test_a_finished_run_expires_once_a_newer_one_ran_and_the_latest_is_kept(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    store = container.store
    assert isinstance(store, DynamoStore)
    job, first = container.jobs.submit(_body(2), start=True)
    assert first is not None
    drain(container, queue)
    ended = store.get_run(job.job_id, first.slot)
    assert ended is not None and ended.status == ExStatus.completed
    assert _expires(store, job.job_id, first.slot) is None  # the latest run: kept
    clock.t = T0 + 30
    second = container.jobs.start_run(job.job_id)
    drain(container, queue)
    assert ended.finished_at is not None
    assert _expires(store, job.job_id, first.slot) == int(ended.finished_at + 2 * DAY_SECONDS)
    assert _expires(store, job.job_id, second.slot) is None
    # a newer ledger record is no run that ran: the second stays the latest, and kept
    skipped = _ledger(job, T0 + 90)
    assert store.create_run(skipped)
    assert _expires(store, job.job_id, skipped.slot) == int(skipped.created + 2 * DAY_SECONDS)
    latest = store.latest_run_that_ran(job.job_id)
    assert latest is not None and latest.slot == second.slot
    assert _expires(store, job.job_id, second.slot) is None


def _ledger(job: Job, at: float) -> Run:
    return Run(
        job_id=job.job_id,
        slot=manual_slot(at, uuid.uuid4().hex[:12]),
        ex_id=str(uuid.uuid4()),
        scheduled_start=at,
        config=job.definition,
        status=ExStatus.skipped,
        created=at,
        updated=at,
        finished_at=at,
    )


def test_slices_and_alerts_expire_after_the_history_days(
    container: Container, queue: MemoryQueue
) -> None:
    store = container.store
    assert isinstance(store, DynamoStore)
    body = _body(None, operations=[{"_op": "range", "end": 3}, {"_op": "noop"}], workers=3)
    job, run = container.jobs.submit(body, start=True)  # the stage's days (90)
    assert run is not None
    drain(container, queue)
    slices = [store.m.slice.get(run.ex_id, s.slice_id) for s in store.list_slices(run.ex_id)]
    assert len(slices) == 3
    days = container.settings.history_days * DAY_SECONDS
    for sl in slices:
        assert sl.expires_at is not None
        assert sl.expires_at.timestamp() == int(float(sl.updated) + days)
    alert = Alert(alert_id="a1", created=T0, reason="timed out", job_id=job.job_id)
    store.put_alert(alert)
    kept = list(store.m.alert.query("alert"))
    assert [a.expires_at.timestamp() for a in kept if a.expires_at] == [int(T0 + days)]


def test_a_deleted_jobs_runs_all_expire(container: Container, queue: MemoryQueue) -> None:
    store = container.store
    assert isinstance(store, DynamoStore)
    job, run = container.jobs.submit(_body(5), start=True)
    assert run is not None
    drain(container, queue)
    assert _expires(store, job.job_id, run.slot) is None
    container.jobs.delete(job.job_id)
    assert _expires(store, job.job_id, run.slot) is not None


@pytest.mark.parametrize("days", [0, 3651, "7", 1.5, True])
def test_history_days_is_checked(container: Container, days: object) -> None:
    from chalicelib.domain.errors import InvalidInput

    with pytest.raises(InvalidInput) as err:
        container.jobs.submit({**_body(None), "history_days": days}, start=False)
    assert "history_days" in str(err.value)


def test_the_stage_default_is_read_and_checked() -> None:
    assert Settings.from_env({"CADENZA_HISTORY_DAYS": "30"}).history_days == 30
    assert Settings.from_env({}).history_days == 90
    with pytest.raises(ValueError, match="CADENZA_HISTORY_DAYS"):
        Settings.from_env({"CADENZA_HISTORY_DAYS": "0"})


# ---- the local tables' migration --------------------------------------------------------------

OLD_LSI: LocalSecondaryIndexTypeDef = {
    "IndexName": "created-index",
    "KeySchema": [
        {"AttributeName": "job_id", "KeyType": "HASH"},
        {"AttributeName": "created", "KeyType": "RANGE"},
    ],
    "Projection": {"ProjectionType": "ALL"},
}


JOB_CREATED = "job-created-index-v2"


def _old_runs_table(backend: Settings) -> None:
    """The runs table as the model made it before: the LSI, and no job-created GSI."""
    store = DynamoStore(backend)
    R = store.m.run
    store.ensure_tables()
    client = boto3.client("dynamodb", region_name=backend.region, endpoint_url=backend.ddb_endpoint)
    described = client.describe_table(TableName=backend.runs_table)["Table"]
    client.delete_table(TableName=backend.runs_table)
    client.get_waiter("table_not_exists").wait(TableName=backend.runs_table)
    gsis: list[GlobalSecondaryIndexTypeDef] = [
        {"IndexName": g["IndexName"], "KeySchema": g["KeySchema"], "Projection": g["Projection"]}
        for g in described["GlobalSecondaryIndexes"]
        if g["IndexName"] != JOB_CREATED
    ]
    client.create_table(
        TableName=backend.runs_table,
        AttributeDefinitions=described["AttributeDefinitions"],
        KeySchema=described["KeySchema"],
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=gsis,
        LocalSecondaryIndexes=[OLD_LSI],
    )
    client.get_waiter("table_exists").wait(TableName=backend.runs_table)
    assert "created-index" not in {name for _, name, _, _ in model_indexes(R)}


def test_a_local_table_with_the_old_indexes_is_rebuilt_with_its_items(
    backend: Settings, tmp_path: Path
) -> None:
    _old_runs_table(backend)
    store = DynamoStore(backend)
    job = Job(job_id=str(uuid.uuid4()), definition=_body(None), created=T0, updated=T0)
    store.create_job(job)
    made = [_ledger(job, T0 + i) for i in range(30)]  # more than one BatchWriteItem
    for run in made:
        assert store.create_run(run)
    done = rebuild_changed_tables(backend, tmp_path)
    assert done == {backend.runs_table: 30}
    assert rebuild_changed_tables(backend, tmp_path) == {}  # the indexes match now
    client = boto3.client("dynamodb", region_name=backend.region, endpoint_url=backend.ddb_endpoint)
    table = client.describe_table(TableName=backend.runs_table)["Table"]
    assert not table.get("LocalSecondaryIndexes")
    assert JOB_CREATED in {g["IndexName"] for g in table["GlobalSecondaryIndexes"]}
    listed, _ = store.runs_created_between(job.job_id, None, T0 + 100)
    assert sorted(r.ex_id for r in listed) == sorted(r.ex_id for r in made)
    [backup] = tmp_path.glob(f"{backend.runs_table}-*.jsonl")
    assert len([json.loads(line) for line in backup.read_text().splitlines()]) == 30


def test_a_local_table_whose_index_projects_otherwise_is_rebuilt(
    backend: Settings, tmp_path: Path
) -> None:
    """An index of the model's name but another projection (the jobs' indexes projected
    everything before they left out the slot sets) is made again too."""
    store = DynamoStore(backend)
    store.ensure_tables()
    client = boto3.client("dynamodb", region_name=backend.region, endpoint_url=backend.ddb_endpoint)
    described = client.describe_table(TableName=backend.jobs_table)["Table"]
    client.delete_table(TableName=backend.jobs_table)
    client.get_waiter("table_not_exists").wait(TableName=backend.jobs_table)
    client.create_table(
        TableName=backend.jobs_table,
        AttributeDefinitions=described["AttributeDefinitions"],
        KeySchema=described["KeySchema"],
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": g["IndexName"],
                "KeySchema": g["KeySchema"],
                "Projection": {"ProjectionType": "ALL"},
            }
            for g in described["GlobalSecondaryIndexes"]
        ],
    )
    client.get_waiter("table_exists").wait(TableName=backend.jobs_table)
    store.create_job(Job(job_id=str(uuid.uuid4()), definition=_body(None), created=T0, updated=T0))
    assert rebuild_changed_tables(backend, tmp_path) == {backend.jobs_table: 1}
    table = client.describe_table(TableName=backend.jobs_table)["Table"]
    assert {g["Projection"]["ProjectionType"] for g in table["GlobalSecondaryIndexes"]} == {
        "INCLUDE"
    }
    assert rebuild_changed_tables(backend, tmp_path) == {}
