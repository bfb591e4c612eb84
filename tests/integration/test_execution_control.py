"""Execution control (Teraslice _stop / _pause / _resume / _workers) over HTTP on moto."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import FakeClock
from tests.conftest import drain
from tests.helpers import deliver

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)

SLICED = {
    "name": "c",
    "workers": 2,
    "lease_seconds": 30,
    "operations": [{"_op": "range", "end": 6}, {"_op": "noop"}],
}


def _start(client: Client, body: dict[str, Any] = SLICED) -> tuple[str, str]:
    r = client.http.post(
        "/v1/jobs?start=true", body=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    return r.json_body["job_id"], r.json_body["ex_id"]


def _ex(client: Client, ex_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.http.get(f"/v1/ex/{ex_id}").json_body
    return body


def test_pause_hands_out_nothing_and_resume_finishes(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    _, ex_id = _start(client)
    deliver(container, queue.take()[0])  # start: slices 0 and 1 handed out
    first, second = queue.take()
    assert deliver(container, first) == "completed"  # slice 2 handed out
    r = client.http.post(f"/v1/ex/{ex_id}/_pause")
    assert (r.status_code, r.json_body) == (200, {"status": "paused"})
    assert client.http.post(f"/v1/ex/{ex_id}/_pause").json_body == {"status": "paused"}
    assert [deliver(container, m) for m in [second, *queue.take()]] == ["dropped", "dropped"]
    ex = _ex(client, ex_id)
    assert ex["_status"] == "paused" and ex["_slicer_stats"]["processed"] == 1
    r = client.http.post(f"/v1/ex/{ex_id}/_resume")
    assert r.json_body == {"status": "running"}
    assert len(queue.messages) == 2  # the two slices handed out while paused, again
    drain(container, queue)
    ex = _ex(client, ex_id)
    assert ex["_status"] == "completed" and ex["_slicer_stats"]["processed"] == 6


def test_pause_and_resume_refuse_other_states(client: Client, queue: MemoryQueue) -> None:
    _, ex_id = _start(client)  # pending
    r = client.http.post(f"/v1/ex/{ex_id}/_pause")
    assert r.status_code == 409 and r.json_body["current_state"] == "pending"
    r = client.http.post(f"/v1/ex/{ex_id}/_resume")
    assert r.status_code == 409 and r.json_body["current_state"] == "pending"


def test_stop_a_pending_execution_at_once(client: Client, container: Container) -> None:
    job_id, ex_id = _start(client)
    r = client.http.post(f"/v1/jobs/{job_id}/_stop")
    assert (r.status_code, r.json_body) == (200, {"status": "stopped"})
    stored = container.store.get_job(job_id)
    assert stored is not None and stored.active_slots == set()  # the slot is free again
    assert client.http.post(f"/v1/ex/{ex_id}/_stop").json_body == {"status": "stopped"}
    assert client.http.post(f"/v1/jobs/{job_id}/_start").status_code == 202


def test_stop_waits_for_a_slice_in_flight(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    _, ex_id = _start(client)
    deliver(container, queue.take()[0])
    a, b = queue.take()
    run = container.store.get_run_by_ex(ex_id)
    assert run is not None
    # a worker holds slice 0 (alive), the other message is still queued
    assert container.store.claim_slice(
        ex_id, a.body["slice_id"], "w", clock.now(), clock.now() + 30
    )
    r = client.http.post(f"/v1/ex/{ex_id}/_stop?blocking=false")
    assert r.json_body == {"status": "stopping"}
    assert deliver(container, b) == "dropped"
    assert container.supervisor.tick(clock.now()).stalled_read == 1
    assert _ex(client, ex_id)["_status"] == "stopping"  # slice 0's lease is alive
    clock.advance(31)
    container.supervisor.tick(clock.now())
    ex = _ex(client, ex_id)
    assert ex["_status"] == "stopped" and "stopped by request" in ex["_failureReason"]


def test_workers_changes_parallelism_while_running(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    _, ex_id = _start(client, {**SLICED, "workers": 1})
    deliver(container, queue.take()[0])
    assert len(queue.messages) == 1
    r = client.http.post(f"/v1/ex/{ex_id}/_workers?add=2")
    assert r.json_body == f"2 workers have been add for execution: {ex_id}"
    assert len(queue.messages) == 3
    r = client.http.post(f"/v1/ex/{ex_id}/_workers?total=1")
    assert r.status_code == 200 and _ex(client, ex_id)["workers"] == 1
    drain(container, queue)
    assert _ex(client, ex_id)["_status"] == "completed"


@pytest.mark.parametrize(
    "query, field",
    [
        ("", "add"),
        ("add=1&total=2", "add"),
        ("add=-1", "add"),
        ("total=0", "total"),
        ("remove=x", "remove"),
    ],
)
def test_workers_bad_input(client: Client, queue: MemoryQueue, query: str, field: str) -> None:
    _, ex_id = _start(client)
    r = client.http.post(f"/v1/ex/{ex_id}/_workers?{query}")
    assert r.status_code == 400 and field in [e["field"] for e in r.json_body["errors"]]


def test_stop_timeout_must_be_a_number(client: Client, queue: MemoryQueue) -> None:
    _, ex_id = _start(client)
    r = client.http.post(f"/v1/ex/{ex_id}/_stop?timeout=soon")
    assert r.status_code == 400 and r.json_body["errors"][0]["field"] == "timeout"


def test_control_of_unknown_targets_is_404(client: Client) -> None:
    for path in ("/v1/ex/nope/_stop", "/v1/jobs/nope/_pause", "/ex/nope/_workers?add=1"):
        assert client.http.post(path).status_code == 404


def test_terminal_executions_report_their_status(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    _, ex_id = _start(client)
    drain(container, queue)
    assert client.http.post(f"/v1/ex/{ex_id}/_stop").json_body == {"status": "completed"}
    run = container.store.get_run_by_ex(ex_id)
    assert run is not None and run.status == ExStatus.completed
