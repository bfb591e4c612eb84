"""Hanging runs (seed 000): detected by the sweep, re-sent while retries remain, then
marked, with an alert kept (GET /v1/alerts) and published (SNS)."""

from __future__ import annotations

import json

import pytest
from chalice.test import Client

from chalicelib.adapters.memory import MemoryNotifier, MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import FakeClock
from tests.clients import ADMIN, SignedClient
from tests.helpers import deliver

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)


def _submit(client: Client, **kw: object) -> tuple[str, str]:
    body = {
        "name": "h",
        "operations": [{"_op": "range", "end": 2}, {"_op": "noop"}],
        "workers": 2,
        "max_retries": 0,
        "lease_seconds": 30,
        **kw,
    }
    r = client.http.post(
        "/v1/jobs?start=true", body=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    return r.json_body["job_id"], r.json_body["ex_id"]


def test_a_slice_whose_worker_is_lost_raises_an_alert(
    client: SignedClient, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    job_id, ex_id = _submit(client)
    deliver(container, queue.take()[0])
    lost, kept = queue.take()
    assert container.store.claim_slice(
        ex_id, lost.body["slice_id"], "dead", clock.now(), clock.now() + 30
    )
    deliver(container, kept)
    clock.advance(31)
    stats = container.supervisor.tick(clock.now())
    assert (stats.slices_failed, stats.alerts) == (1, 1)
    ex = client.http.get(f"/v1/ex/{ex_id}").json_body
    assert ex["_status"] == "failed" and ex["_slicer_stats"]["failed"] == 1
    alerts = client.as_(ADMIN).http.get("/v1/alerts").json_body
    assert [(a["reason"], a["ex_id"], a["job_id"]) for a in alerts] == [
        ("hanging: slices lost their worker", ex_id, job_id)
    ]
    assert alerts[0]["slot"] and alerts[0]["created"].endswith("Z")
    published = container.notifier
    assert isinstance(published, MemoryNotifier) and len(published.published) == 1


def test_a_run_without_progress_past_its_timeout_is_failed_and_alerted(
    client: SignedClient, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    _, ex_id = _submit(client, timeout_seconds=100)
    for _ in range(3):  # the start keeps getting lost: re-sent while the timeout allows
        queue.take()
        clock.advance(31)
        assert container.supervisor.tick(clock.now()).resent == 1
    queue.take()
    clock.advance(31)
    stats = container.supervisor.tick(clock.now())
    assert stats.alerts == 1
    run = container.store.get_run_by_ex(ex_id)
    assert run is not None and run.status == ExStatus.failed
    assert "timeout_seconds 100" in run.errors[-1]["error"]
    assert client.as_(ADMIN).http.get("/v1/alerts").json_body[0]["reason"] == "timed out"
    job = container.store.get_job(run.job_id)
    assert job is not None and job.active_slots == set()  # the slot is freed


def test_a_one_slice_run_that_keeps_losing_its_worker_is_alerted(
    client: SignedClient,
    container: Container,
    queue: MemoryQueue,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = {
        "name": "one",
        "operations": [{"_op": "noop"}, {"_op": "noop"}],
        "max_retries": 0,
        "lease_seconds": 10,
    }
    client.http.post(
        "/v1/jobs?start=true", body=json.dumps(body), headers={"Content-Type": "application/json"}
    )

    def die(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("chalicelib.services.start.process", die)
    with pytest.raises(KeyboardInterrupt):
        deliver(container, queue.take()[0])
    clock.advance(12)
    assert container.supervisor.tick(clock.now()).alerts == 1
    assert client.as_(ADMIN).http.get("/v1/alerts?size=1").json_body[0]["reason"] == (
        "hanging: the worker was lost"
    )
