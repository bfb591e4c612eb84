"""DynamoDB write units of a run, as DynamoDB Local answers them (ReturnConsumedCapacity:
units on each table and index): counts, so stable, unlike times. They pin what the
indexes' projections save (docs/costs.md, "Where the units go"): a job's slot taken and
freed writes no job index, a run's writes write only the indexes whose keys or few
projected attributes change."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from chalicelib.adapters.dynamodb.counting import CallCounter, counting
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
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


def _on_jobs_indexes(c: CallCounter, jobs_table: str) -> float:
    return sum(u for k, u in c.write_units.items() if k.startswith(f"{jobs_table} "))


def test_an_on_demand_one_slice_run_writes_no_job_index(
    local: Container, queue: MemoryQueue
) -> None:
    job, _ = local.jobs.submit(NOOP, start=False)
    with counting(units=True) as c:
        local.jobs.start_run(job.job_id)
        drain(local, queue)
    # the job item is written twice (its slot taken, then freed), in transactions
    assert _on_jobs_indexes(c, local.settings.jobs_table) == 0
    assert c.write_units[local.settings.jobs_table] > 0
    assert sum(c.write_units.values()) == pytest.approx(ON_DEMAND_UNITS)


def test_a_scheduled_one_slice_run_writes_the_jobs_indexes_only_at_its_advance(
    local: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    local.jobs.submit({**NOOP, "schedule": {"rate": "rate(1 minute)"}}, start=True)
    local.supervisor.tick(T0)
    with counting(units=True) as tick_only:
        local.supervisor.tick(T0 + 1)
    clock.t = T0 + 60
    with counting(units=True) as c:
        stats = local.supervisor.tick(T0 + 60)
        drain(local, queue)
    assert stats.runs_created == 1
    jobs = local.settings.jobs_table
    # the schedule's advance moves the due index's and the updated index's keys (a delete
    # and a put each); the listing indexes take the new version and times
    advanced = {"due", "jobs-updated", "list", "owner", "jobs-created"}
    written = {k for k, u in c.write_units.items() if k.startswith(f"{jobs} ") and u}
    assert written == {f"{jobs} {name}-index-v2" for name in advanced}
    net = sum(c.write_units.values()) - sum(tick_only.write_units.values())
    assert net == pytest.approx(SCHEDULED_UNITS)


# measured on DynamoDB Local 1.25; before the projections were narrowed, 109 and 176
ON_DEMAND_UNITS = 72.0
SCHEDULED_UNITS = 128.0
