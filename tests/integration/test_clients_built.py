"""A container builds its DynamoDB clients when it starts, not on its first calls: PynamoDB
builds one per connection on first use (0.1-0.4 s of CPU apiece, about a second when threads
race to it), which a restarted stack's first tick paid on the way to its on-time runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.session import Session

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container, build_clients
from chalicelib.ports import FakeClock
from tests.conftest import T0, drain

NOOP = {"name": "c", "operations": [{"_op": "noop"}], "schedule": {"rate": "rate(1 minute)"}}


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The services of the botocore clients built meanwhile."""
    names: list[str] = []
    real = Session.create_client

    def counted(self: Session, service_name: str, *args: Any, **kwargs: Any) -> Any:
        names.append(service_name)
        return real(self, service_name, *args, **kwargs)

    monkeypatch.setattr(Session, "create_client", counted)
    yield names


def test_a_containers_first_tick_and_runs_build_no_client_once_built(
    container: Container, queue: MemoryQueue, clock: FakeClock, created: list[str]
) -> None:
    connections = build_clients(container.settings)
    assert connections >= 9  # six tables' models, stats, quotas, transactions...
    assert "dynamodb" in created  # the fixture's calls had not built them all
    assert build_clients(container.settings) == connections
    created.clear()
    job, _ = container.jobs.submit(NOOP, start=True)
    container.supervisor.tick(T0)
    clock.t = T0 + 60
    stats = container.supervisor.tick(T0 + 60)
    assert drain(container, queue) >= 1
    assert stats.runs_created == 1
    assert [str(r.status) for r in container.store.list_runs(job.job_id)] == ["completed"]
    assert created == []
