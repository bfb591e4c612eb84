"""DynamoDB call budgets: counted, so stable across machines."""

from __future__ import annotations

import pytest

from chalicelib.adapters.dynamodb.counting import counting
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.ports import FakeClock
from tests.conftest import T0, drain

NOOP = {"name": "b", "operations": [{"_op": "noop"}, {"_op": "noop"}]}


@pytest.mark.parametrize(
    "overlap, transactions, updates, reads",
    [
        # allow: create (transaction), claim, finish; the start reads its run
        ("allow", 1, 2, 1),
        # skip: the run also takes / frees the job's active slot, in the same transactions;
        # the finish re-reads the run (a transaction returns no item)
        ("skip", 2, 1, 2),
    ],
)
def test_single_slice_scheduled_run_costs_three_writes(
    container: Container,
    queue: MemoryQueue,
    clock: FakeClock,
    overlap: str,
    transactions: int,
    updates: int,
    reads: int,
):
    n = 5
    for _ in range(n):
        container.jobs.submit(
            {**NOOP, "overlap": overlap, "schedule": {"rate": "rate(1 minute)"}}, start=True
        )
    container.supervisor.tick(T0)  # creates the supervisor record
    with counting() as tick_only:
        container.supervisor.tick(T0 + 1)
    clock.t = T0 + 60
    with counting() as c:
        stats = container.supervisor.tick(T0 + 60)
        drain(container, queue)
    assert stats.runs_created == n
    assert c.writes - tick_only.writes == 3 * n  # create, start, finish
    assert c.calls["TransactWriteItems"] == transactions * n
    assert c.calls["UpdateItem"] - tick_only.calls["UpdateItem"] == updates * n
    assert c.calls["GetItem"] - tick_only.calls["GetItem"] == reads * n


def test_on_demand_single_slice_run_costs_three_writes(container: Container, queue: MemoryQueue):
    job, _ = container.jobs.submit(NOOP, start=False)
    with counting() as c:
        container.jobs.start_run(job.job_id)
        drain(container, queue)
    assert c.writes == 3  # create (taking the job's active slot), start, finish (freeing it)
    assert c.calls["TransactWriteItems"] == 2 and c.calls["UpdateItem"] == 1
    assert c.reads == 3  # the job (validation), the run at start, the run after the finish


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
