"""DynamoDB call budgets: counted, so stable across machines."""

from __future__ import annotations

from chalicelib.adapters.dynamodb.counting import counting
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.ports import FakeClock
from tests.conftest import T0, drain

NOOP = {"name": "b", "operations": [{"_op": "noop"}, {"_op": "noop"}]}


def test_single_slice_scheduled_run_costs_three_writes(
    container: Container, queue: MemoryQueue, clock: FakeClock
):
    jobs = [
        container.jobs.submit({**NOOP, "schedule": {"rate": "rate(1 minute)"}}, start=True)[0]
        for _ in range(5)
    ]
    container.supervisor.tick(T0)  # creates the supervisor record
    with counting() as tick_only:
        container.supervisor.tick(T0 + 1)
    clock.t = T0 + 60
    with counting() as c:
        stats = container.supervisor.tick(T0 + 60)
        drain(container, queue)
    assert stats.runs_created == 5
    per_tick_writes = tick_only.writes  # the supervisor's own record
    assert (c.writes - per_tick_writes) == 3 * len(jobs)  # create, start, finish
    assert c.calls["TransactWriteItems"] == 5 and c.calls["UpdateItem"] == 10 + per_tick_writes
    assert c.calls["GetItem"] - tick_only.calls["GetItem"] == 5  # the start's read of its run


def test_on_demand_single_slice_run_costs_three_writes(container: Container, queue: MemoryQueue):
    job, _ = container.jobs.submit(NOOP, start=False)
    with counting() as c:
        container.jobs.start_run(job.job_id)
        drain(container, queue)
    assert c.writes == 3 and c.calls["PutItem"] == 1 and c.calls["UpdateItem"] == 2
    assert c.reads == 2  # the job (validation) and the run (at start)


def test_tick_reads_only_due_jobs(container: Container):
    for i in range(30):
        schedule = {"rate": "rate(1 minute)"} if i < 3 else {"rate": "rate(1 day)"}
        container.jobs.submit({**NOOP, "schedule": schedule}, start=True)
    container.supervisor.tick(T0)
    with counting() as c:
        stats = container.supervisor.tick(T0 + 60)
    assert stats.runs_created == 3
    shards = container.settings.due_shards + container.settings.lease_shards
    assert c.calls["Query"] == shards
    assert c.items_read == 3 + 1  # the due jobs and the supervisor record
