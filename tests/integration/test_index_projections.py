"""The indexes project only part of a job or a run (indexes.py: JOB_LISTED, RUN_LISTED):
every read through an index still gives whole records, on moto and on DynamoDB Local
(which, like DynamoDB, writes an index only when a key or a projected attribute changes)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from chalicelib.adapters.dynamodb.indexes import JOB_LISTED, JOB_SLOT_SETS
from chalicelib.adapters.dynamodb.models import JobModel
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.domain.jobs import Job, due_shard
from chalicelib.domain.runs import Run, manual_slot
from chalicelib.domain.transitions import ExStatus, JobState
from chalicelib.ports import Sort

T = 1_800_000_000.0
OWNER = "projections"
# the job item's attributes no read of a Job takes (to_job): kept in the table only
JOB_UNREAD = {"name", "list_key", "list_part", "due_shard", "job_id"}


def test_the_jobs_indexes_project_every_attribute_a_job_is_read_from_but_its_slot_sets() -> None:
    attributes = set(JobModel.get_attributes())
    assert set(JOB_LISTED) | set(JOB_SLOT_SETS) | JOB_UNREAD == attributes
    assert not set(JOB_LISTED) & set(JOB_SLOT_SETS)


def _job() -> Job:
    definition = {"name": "p", "owner": OWNER, "operations": [{"_op": "noop"}]}
    return Job(
        job_id=str(uuid.uuid4()),
        definition=definition,
        state=JobState.SCHEDULED,
        next_fire_at=T + 60,
        anchor=T - 5,
        version=3,
        active_slots={"a", "b"},
        buffered_slot="c",
        waiting_slots={"d"},
        unrecorded=[(T - 60, "supervisor_halted")],
        suspended_at=T - 30,
        resumed_at=T - 20,
        created=T,
        updated=T + 1,
    )


def test_a_job_read_through_any_index_is_whole_but_for_its_slot_sets(store: DynamoStore) -> None:
    job = _job()
    store.create_job(job)
    stored = store.get_job(job.job_id)
    assert stored is not None and stored.active_slots == {"a", "b"}
    listed = dataclasses.replace(
        stored, active_slots=set(), buffered_slot=None, waiting_slots=set()
    )
    shard = due_shard(job.job_id, store.settings.due_shards)
    assert store.due_jobs(shard, T + 60) == [listed]
    assert store.list_jobs()[0] == [listed]
    assert store.jobs_by_owner(OWNER)[0] == [listed]
    assert store.list_jobs(state=JobState.SCHEDULED)[0] == [listed]  # a filter on `state`
    for field in ("created", "updated"):
        assert store.job_window(False, True, Sort(field), 0, 5, owner=OWNER) == [listed]


def _run(job_id: str, created: float, status: ExStatus, **fields: Any) -> Run:
    run = Run(
        job_id=job_id,
        slot=manual_slot(created) + uuid.uuid4().hex[:6],
        ex_id=str(uuid.uuid4()),
        scheduled_start=created,
        config={"name": "p", "owner": OWNER, "operations": [{"_op": "noop"}]},
        status=status,
        created=created,
        updated=created + 1,
    )
    return dataclasses.replace(run, **fields)


def test_a_run_read_through_any_index_is_whole(store: DynamoStore) -> None:
    job = _job()
    store.create_job(dataclasses.replace(job, active_slots=set()))
    failed = _run(
        job.job_id,
        T + 1,
        ExStatus.failed,
        started_at=T + 1.5,
        finished_at=T + 2,
        processed=1,
        failed=1,
        inline=True,
        attempts=2,
        result={"n": 1},
        has_errors=True,
        errors=[{"error": "boom"}],
        reason="boom",
        args="a b",
    )
    running = _run(
        job.job_id,
        T + 3,
        ExStatus.running,
        started_at=T + 3.5,
        lease_token="tok",
        lease_expires_at=T + 60,
        check_at=T + 60,
        attempts=1,
        workers=2,
    )
    for run in (failed, running):
        assert store.create_run(run)
    whole: dict[str, Run] = {}
    for run in (failed, running):
        stored = store.get_run(run.job_id, run.slot)
        assert stored is not None
        whole[run.ex_id] = stored
    assert whole[failed.ex_id].errors == [{"error": "boom"}]
    for run in (failed, running):
        assert store.get_run_by_ex(run.ex_id) == whole[run.ex_id]
    history, _ = store.runs_created_between(job.job_id, None, T + 100)
    assert sorted(history, key=lambda r: r.created) == [whole[failed.ex_id], whole[running.ex_id]]
    only_failed, _ = store.runs_created_between(job.job_id, None, None, [ExStatus.failed])
    assert only_failed == [whole[failed.ex_id]]
    counts = store.count_runs_by_status(job.job_id, None, None)
    assert counts == {ExStatus.failed: 1, ExStatus.running: 1}
    statuses = [ExStatus.failed, ExStatus.running]
    for field in ("created", "updated"):
        listed = store.run_window(statuses, False, Sort(field, True), 0, 5, owner=OWNER)
        assert listed == [whole[failed.ex_id], whole[running.ex_id]]
        errors = store.error_window(Sort(field), 0, 5, owner=OWNER)
        assert errors == [whole[failed.ex_id]]
