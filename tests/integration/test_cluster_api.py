"""GET /v1/cluster/state and /v1/cluster/stats (seed 001), through chalice.test.Client on moto;
the counters' race on DynamoDB Local (moto cannot referee a conditional race)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from functools import partial
from typing import Any

import pytest
from chalice.test import Client
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container, build_container
from chalicelib.config import Settings
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import FakeClock
from chalicelib.services.admin import AdminService
from tests import conftest
from tests.clients import SignedClient
from tests.conftest import T0, drain
from tests.helpers import deliver
from tests.helpers import race as _race

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)

SLICED = {"name": "sliced", "operations": [{"_op": "range", "end": 3}, {"_op": "noop"}]}
FAILING = {
    "name": "failing",
    "max_retries": 0,
    "operations": [{"_op": "range", "end": 4}, {"_op": "fail", "slices": [1]}],
}
INLINE = {"name": "inline", "operations": [{"_op": "noop"}, {"_op": "noop"}]}
NODE_KEYS = {"node_id", "hostname", "pid", "total", "state", "available", "active"}
COUNTERS = {
    "processed",
    "failed",
    "queued",
    "job_duration",
    "workers_joined",
    "workers_disconnected",
    "workers_reconnected",
}
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@pytest.fixture
def client(admin_client: SignedClient) -> SignedClient:
    """The cluster's stats are the admin's (every owner's runs)."""
    return admin_client


def _start(client: Client, job: dict[str, Any]) -> dict[str, Any]:
    r = client.http.post(
        "/v1/jobs?start=true", body=json.dumps(job), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 202, r.json_body
    body: dict[str, Any] = r.json_body
    return body


def _stats(client: Client, prefix: str = "/v1") -> dict[str, Any]:
    r = client.http.get(f"{prefix}/cluster/stats")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = r.json_body
    assert set(body) == {"controllers", "slicer"}
    controllers: dict[str, Any] = body["controllers"]
    assert set(controllers) == COUNTERS and body["slicer"] == controllers
    return controllers


# ---- state ---------------------------------------------------------------------------------


def test_state_shows_the_supervisor_and_the_work_each_worker_function_holds(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    state = client.http.get("/v1/cluster/state").json_body
    assert set(state) == {"supervisor", "start_worker", "slice_worker"}
    for node_id, node in state.items():
        assert set(node) >= NODE_KEYS and node["node_id"] == node_id
        assert node["hostname"] == f"cadenza-{container.settings.stage}-{node_id}"
    assert state["supervisor"]["state"] == "NO_SCHEDULE"  # never ticked
    assert state["supervisor"]["active"] == [] and state["start_worker"]["active"] == []

    container.supervisor.tick(clock.now())
    sliced = _start(client, {**SLICED, "workers": 2})
    inline = _start(client, INLINE)
    slicing = _start(client, SLICED)
    starts = {m.body["slot"]: m for m in queue.take()}
    slots = {r.ex_id: r.slot for r in container.store.live_runs()}
    deliver(container, starts[slots[sliced["ex_id"]]])  # running, two slices handed out
    for held in (inline, slicing):  # claimed by a start worker, not yet run / set going
        prepared = container.worker.prepare_start(held["job_id"], slots[held["ex_id"]])
        assert not isinstance(prepared, str)

    state = client.http.get("/cluster/state").json_body  # without /v1 too
    sup = state["supervisor"]
    assert sup["state"] == "FINISHED" and sup["ticks"] == 1 and sup["last_tick_at"]
    assert sup["active"] == [
        {"worker_id": "supervisor", "assignment": "cluster_master", "pid": None}
    ]
    start_entries = {e["ex_id"]: e for e in state["start_worker"]["active"]}
    assert set(start_entries) == {inline["ex_id"], slicing["ex_id"]}
    for e in start_entries.values():
        assert {"worker_id", "assignment", "pid", "job_id"} <= set(e)
    assert start_entries[inline["ex_id"]]["assignment"] == "worker"  # runs its one slice
    assert start_entries[inline["ex_id"]]["job_id"] == inline["job_id"]
    assert start_entries[slicing["ex_id"]]["assignment"] == "execution_controller"
    start_node = state["start_worker"]
    assert (start_node["state"], start_node["total"], start_node["available"]) == ("active", 2, 0)
    [slice_entry] = state["slice_worker"]["active"]
    assert slice_entry["assignment"] == "worker" and slice_entry["slices"] == 2
    assert (slice_entry["ex_id"], slice_entry["job_id"]) == (sliced["ex_id"], sliced["job_id"])
    worker = state["slice_worker"]
    assert (worker["state"], worker["total"], worker["available"]) == ("active", 2, 0)

    drain(container, queue)  # the sliced run finishes; the two claimed runs are still held
    state = client.http.get("/v1/cluster/state").json_body
    assert state["slice_worker"]["active"] == [] and state["slice_worker"]["state"] == "idle"
    assert len(state["start_worker"]["active"]) == 2

    container.jobs.submit({**INLINE, "schedule": {"rate": "rate(1 day)"}}, start=True)
    assert client.http.get("/v1/cluster/state").json_body["supervisor"]["state"] == "RUNNING"
    AdminService(container.store, clock, container.settings).halt("maintenance")
    sup = client.http.get("/v1/cluster/state").json_body["supervisor"]
    assert (sup["state"], sup["active"], sup["reason"]) == ("HALTED", [], "maintenance")


# ---- stats ---------------------------------------------------------------------------------


def _run_three_jobs(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    a = _start(client, {**SLICED, "workers": 2})
    deliver(container, queue.take()[0])  # a starts at T0 with two slices in flight
    clock.advance(5)
    drain(container, queue)  # ... and ends 5 s later
    b = _start(client, FAILING)  # 3 slices processed, slice 1 failed (no retries)
    c = _start(client, INLINE)  # one inline slice
    drain(container, queue)
    return a, b, c


@pytest.mark.moto  # measures DynamoDB
def test_stats_count_every_ended_run_exactly(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    assert _stats(client) == dict.fromkeys(COUNTERS, 0)
    _run_three_jobs(client, container, queue, clock)
    expected = {
        "processed": 3 + 3 + 1,
        "failed": 1,
        "queued": 0,
        "job_duration": 5,
        "workers_joined": 2 + 1 + 1,
        "workers_disconnected": 0,
        "workers_reconnected": 0,
    }
    store = container.store
    assert isinstance(store, DynamoStore)
    assert sum(len(store._marked(s)) for s in range(container.settings.stats_shards)) == 3
    assert _stats(client) == expected  # folds the three ended runs into the counters
    assert sum(len(store._marked(s)) for s in range(container.settings.stats_shards)) == 0
    assert store.cluster_totals().runs == 3
    assert _stats(client, prefix="") == expected  # again, without /v1: nothing added twice
    assert store.fold_tallies(clock.now()) == 0


@pytest.mark.moto  # measures DynamoDB
def test_runs_left_unfolded_by_a_bounded_fold_are_still_counted(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    _run_three_jobs(client, container, queue, clock)
    store = container.store
    assert isinstance(store, DynamoStore)
    stats = container.cluster.stats(fold_limit=1)
    assert (stats.totals.runs, stats.totals.processed, stats.totals.failed) == (3, 7, 1)
    assert sum(len(store._marked(s)) for s in range(container.settings.stats_shards)) == 2
    assert container.cluster.stats().totals == stats.totals


def test_stats_include_live_runs_progress_and_queued_slices(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    _start(client, {**SLICED, "workers": 2})
    deliver(container, queue.take()[0])
    first, second = queue.take()
    assert _stats(client) | {"job_duration": 0} == {
        **dict.fromkeys(COUNTERS, 0),
        "queued": 2,
        "workers_joined": 2,
    }
    clock.advance(3)
    deliver(container, first)  # done; the third slice is handed out in its place
    live = _stats(client)
    assert (live["processed"], live["queued"], live["job_duration"]) == (1, 2, 3)
    deliver(container, second)
    drain(container, queue)
    ended = _stats(client)
    assert (ended["processed"], ended["queued"], ended["workers_joined"]) == (3, 0, 2)


def test_redelivered_slice_and_retried_finalize_do_not_double_count(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    body = _start(client, {**SLICED, "workers": 3})
    deliver(container, queue.take()[0])
    messages = queue.take()
    for m in messages:
        deliver(container, m)
    run = container.store.get_run_by_ex(body["ex_id"])
    assert run is not None and run.status == ExStatus.completed
    before = _stats(client)
    assert before["processed"] == 3
    for m in messages:  # SQS delivers again
        assert deliver(container, m) == "dropped"
    running = replace(run, status=ExStatus.running)
    assert container.worker.finalize(running, clock.now()) is False  # a retried finalize
    container.supervisor.tick(clock.now() + 3600)  # the sweep finds nothing to do
    assert _stats(client) == before


def test_a_rerun_keeps_the_replaced_runs_figures(
    client: Client, container: Container, queue: MemoryQueue
) -> None:
    body = _start(client, FAILING)
    drain(container, queue)
    # not folded yet: the rerun replaces the record that carries its figures
    r = client.http.post(f"/v1/ex/{body['ex_id']}/_resolve?action=rerun")
    assert r.status_code == 200, r.json_body
    drain(container, queue)
    stats = _stats(client)
    assert (stats["processed"], stats["failed"]) == (6, 2)


def test_a_slice_given_up_on_counts_a_disconnected_worker(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    body = _start(client, {**SLICED, "max_retries": 0, "workers": 3})
    deliver(container, queue.take()[0])
    lost, *rest = queue.take()
    b = lost.body
    # a worker claims the slice and vanishes
    assert container.store.claim_slice(b["ex_id"], b["slice_id"], "gone", clock.now(), clock.now())
    for m in rest:
        deliver(container, m)
    clock.advance(61)
    container.supervisor.tick(clock.now())  # the sweep gives the slice up
    drain(container, queue)
    run = container.store.get_run_by_ex(body["ex_id"])
    assert run is not None and run.status == ExStatus.failed
    stats = _stats(client)
    assert (stats["processed"], stats["failed"], stats["workers_disconnected"]) == (2, 1, 1)


# ---- OpenMetrics / Prometheus text ----------------------------------------------------------


def _samples(families: Iterable[Metric]) -> dict[str, tuple[str, float, dict[str, str]]]:
    return {f.name: (f.type, f.samples[0].value, f.samples[0].labels) for f in families}


def test_openmetrics_exposition_holds_the_counters(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    _run_three_jobs(client, container, queue, clock)
    r = client.http.get("/cluster/stats", headers={"Accept": "application/openmetrics-text;"})
    assert r.status_code == 200 and r.headers["Content-Type"] == OPENMETRICS_TYPE
    text = r.body.decode() if isinstance(r.body, bytes) else r.body
    assert text.endswith("# EOF\n")
    got = _samples(parse_openmetrics(text))
    cluster = {"cluster": container.settings.prefix}
    assert got == {
        "cadenza_slices_processed": ("counter", 7.0, cluster),
        "cadenza_slices_failed": ("counter", 1.0, cluster),
        "cadenza_slices_queued": ("gauge", 0.0, cluster),
        "cadenza_job_duration_seconds": ("counter", 5.0, cluster),
        "cadenza_workers_joined": ("counter", 4.0, cluster),
        "cadenza_workers_disconnected": ("counter", 0.0, cluster),
        "cadenza_workers_reconnected": ("counter", 0.0, cluster),
    }


def test_prometheus_text_on_request_and_json_otherwise(
    client: Client, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    _run_three_jobs(client, container, queue, clock)
    r = client.http.get("/v1/cluster/stats", headers={"Accept": "text/plain;version=0.0.4"})
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = r.body.decode() if isinstance(r.body, bytes) else r.body
    got = _samples(parse_prometheus(text))
    assert got["cadenza_slices_processed"][:2] == ("counter", 7.0)
    assert got["cadenza_slices_queued"][:2] == ("gauge", 0.0)
    r = client.http.get("/v1/cluster/stats", headers={"Accept": "text/html, */*"})
    assert r.json_body["controllers"]["processed"] == 7


# ---- the counters' race (DynamoDB Local) ----------------------------------------------------


@pytest.mark.ddblocal
def test_racing_folds_and_finishers_count_each_run_once(ddb_local: str) -> None:
    settings: Settings = replace(
        conftest.test_settings(), dynamodb_endpoint=ddb_local, stats_shards=2
    )
    DynamoStore(settings).ensure_tables()
    clock, queue = FakeClock(T0), MemoryQueue()
    a, b = (
        build_container(settings, store=DynamoStore(settings), queue=queue, clock=clock)
        for _ in range(2)
    )
    a.worker.sleep = b.worker.sleep = lambda s: None
    runs = 12
    for i in range(runs):
        job = {"name": f"r{i}", "workers": 2, "operations": [{"_op": "range", "end": 2}]}
        a.jobs.submit(job, start=True)
    for m in queue.take():
        deliver(a, m)
    pairs = queue.take()
    assert len(pairs) == 2 * runs
    for i in range(0, len(pairs), 2):  # the last two slices of each run finish together
        _race(partial(deliver, a, pairs[i]), partial(deliver, b, pairs[i + 1]))
        if i % 6 == 0:  # and folds race each other and the finishers
            _race(lambda: a.cluster.stats(), lambda: b.cluster.stats())
    folded = _race(
        lambda: a.store.fold_tallies(clock.now()), lambda: b.store.fold_tallies(clock.now())
    )
    totals = a.store.cluster_totals()
    assert (totals.runs, totals.processed, totals.failed) == (runs, 2 * runs, 0)
    assert sum(folded) <= runs
    assert a.store.fold_tallies(clock.now()) == 0
    stats = b.cluster.stats()
    assert (stats.totals.processed, stats.totals.workers_joined, stats.queued) == (
        2 * runs,
        2 * runs,
        0,
    )
