"""DynamoDB write units of a run, as AWS bills them (cadenza_tools.dynamodb_units computes
them from the requests and the items on DynamoDB Local, whose own ReturnConsumedCapacity
accounting of transactions is not AWS's): counts, so stable, unlike times. They pin what
the indexes' projections save (docs/costs.md, "Where the units go"): a job's slot taken
and freed writes no job index, a run's writes write only the indexes whose keys or few
projected attributes change."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from cadenza_tools.dynamodb_units import Bill, item_size, metering
from chalicelib.adapters.dynamodb.models import RUN_FLAGS
from chalicelib.adapters.dynamodb.runs import RunRecords
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.runs import Run
from chalicelib.ports import FakeClock
from tests import conftest
from tests.conftest import T0, drain, moto_container

pytestmark = pytest.mark.ddblocal
NOOP = {"name": "u", "operations": [{"_op": "noop"}]}


@pytest.fixture
def local(ddb_local: str, clock: FakeClock, queue: MemoryQueue) -> Iterator[Container]:
    """A container whose store is on DynamoDB Local (the queue in memory)."""
    settings = dataclasses.replace(conftest.test_settings(), dynamodb_endpoint=ddb_local)
    yield from moto_container(settings, clock, queue)


def _on_jobs_indexes(c: Bill, jobs_table: str) -> float:
    return sum(u for k, u in c.write_units.items() if k.startswith(f"{jobs_table} "))


def test_an_on_demand_one_slice_run_writes_no_job_index(
    local: Container, queue: MemoryQueue
) -> None:
    job, _ = local.jobs.submit(NOOP, start=False)
    with metering() as meter:
        local.jobs.start_run(job.job_id)
        drain(local, queue)
    c = meter.take()
    # the job item is written twice (its slot taken, then freed), in transactions
    assert _on_jobs_indexes(c, local.settings.jobs_table) == 0
    assert c.write_units[local.settings.jobs_table] > 0
    assert c.writes == pytest.approx(ON_DEMAND_UNITS)


def test_a_scheduled_one_slice_run_writes_the_jobs_indexes_only_at_its_advance(
    local: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    local.jobs.submit({**NOOP, "schedule": {"rate": "rate(1 minute)"}}, start=True)
    local.supervisor.tick(T0)
    with metering() as meter:
        local.supervisor.tick(T0 + 1)
        tick_only = meter.take()
        clock.t = T0 + 60
        stats = local.supervisor.tick(T0 + 60)
        drain(local, queue)
    c = meter.take()
    assert stats.runs_created == 1
    jobs = local.settings.jobs_table
    # the schedule's advance moves the due index's and the updated index's keys (a delete
    # and a put each); the listing indexes take the new version and times
    advanced = {"due", "jobs-updated", "list", "owner", "jobs-created"}
    written = {k for k, u in c.write_units.items() if k.startswith(f"{jobs} ") and u}
    assert written == {f"{jobs} {name}-index-v2" for name in advanced}
    assert c.writes - tick_only.writes == pytest.approx(SCHEDULED_UNITS)


# AWS's units (every item of these runs is under 1 KB: 1 unit an item write, 2 in a
# transaction, 2 for an index key moved). On demand: jobs 4 (two transactions), runs 5,
# runs' indexes sweep 4, ex-created 5, ex-updated 5, job-created 3, ex 1, tally 1.
# Scheduled (the tick's own supervisor write taken off): jobs 6, runs 6, the same runs'
# indexes, the jobs' indexes the advance moves (due 2, jobs-updated 2, list, owner,
# jobs-created 1 each).
# DynamoDB Local answered 72 and 128 for the same runs (109 and 176 before the
# projections were narrowed).
ON_DEMAND_UNITS = 28.0
SCHEDULED_UNITS = 38.0


def test_a_started_runs_item_stores_no_false_flag_and_stays_under_a_kilobyte(
    local: Container, queue: MemoryQueue, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's eight flags are written only while true (~80 bytes less): on the local
    stack the cost tool's scheduled run, once claimed, was just over 1 KB with them, which
    doubled each write of it and of its index entries that project everything. Here (a
    shorter owner) it was 1,006 bytes with them, 927 without."""
    client = boto3.client(
        "dynamodb", region_name="us-east-1", endpoint_url=local.settings.ddb_endpoint
    )
    sizes: list[int] = []
    stored: list[dict[str, Any]] = []

    def watched(name: str) -> None:
        original = getattr(RunRecords, name)

        def write(self: RunRecords, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            for run in _runs_in(args):
                key = {"job_id": {"S": run.job_id}, "slot": {"S": run.slot}}
                item = client.get_item(
                    TableName=local.settings.runs_table, Key=key, ConsistentRead=True
                )["Item"]
                sizes.append(item_size(item))
                stored.append(item)
            return result

        monkeypatch.setattr(RunRecords, name, write)

    for name in ("apply_run", "claim_runs_together"):
        watched(name)
    body = {**NOOP, "name": "cost-scheduled", "schedule": {"interval_seconds": 10}}
    local.jobs.submit(body, start=True)
    clock.t = T0 + 60.123456789  # a real clock's times: 18 digits each
    local.supervisor.tick(clock.t)
    drain(local, queue)
    assert stored, "no run was written"
    assert [s["status"]["S"] for s in stored][-1] == "completed"
    assert not [(k, i) for i in stored for k in RUN_FLAGS if k in i and not i[k]["BOOL"]]
    assert max(sizes) < 1024, sizes


def _runs_in(args: tuple[Any, ...]) -> list[Run]:
    first = args[0]
    if isinstance(first, Run):
        return [first]
    return [run for run, _ in first]
