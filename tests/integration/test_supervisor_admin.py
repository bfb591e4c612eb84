"""The supervisor admin API (seed 000) through chalice.test.Client on moto."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from chalice.test import Client

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.ports import FakeClock
from tests.clients import SignedClient
from tests.conftest import T0

pytestmark = pytest.mark.fakes  # services on the in-memory fakes (tests/fakes)

NOOP = [{"_op": "noop"}, {"_op": "noop"}]


@pytest.fixture
def client(admin_client: SignedClient) -> SignedClient:
    """The supervisor routes need the admin role."""
    return admin_client


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ms(t: float) -> str:
    """ISO 8601 to the millisecond, as the API shows times."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@pytest.mark.parametrize("prefix", ["/api", "/v1", ""])
def test_the_supervisor_routes_answer_at_the_seeds_paths_and_with_and_without_v1(
    client: Client, container: Container, prefix: str
) -> None:
    container.supervisor.tick(T0)
    state = client.http.get(f"{prefix}/supervisor/state")
    assert state.status_code == 200 and state.json_body["state"] == "FINISHED"
    assert state.json_body["last_tick_at"] == ms(T0)
    halted = client.http.post(f"{prefix}/supervisor/halt?reason=x")
    assert halted.status_code == 200 and halted.json_body["state"] == "HALTED"
    assert client.http.post(f"{prefix}/supervisor/restart").json_body["state"] != "HALTED"


def test_state_is_503_until_the_schedule_has_fired(client: Client, container: Container) -> None:
    r = client.http.get("/api/supervisor/state")
    assert r.status_code == 503 and r.json_body["error"] == "no_schedule"
    container.supervisor.tick(T0)
    assert client.http.get("/api/supervisor/state").json_body["state"] == "FINISHED"


def test_running_halt_restart(client: Client, container: Container, queue: MemoryQueue) -> None:
    body = {"name": "s", "operations": NOOP, "schedule": {"rate": "rate(1 minute)"}}
    r = client.http.post(
        "/v1/jobs?start=true", body=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    job_id = r.json_body["job_id"]
    container.supervisor.tick(T0)
    assert client.http.get("/api/supervisor/state").json_body["state"] == "RUNNING"
    halted = client.http.post("/api/supervisor/halt?reason=db+maintenance")
    assert halted.status_code == 200
    assert halted.json_body["state"] == "HALTED" and halted.json_body["reason"] == "db maintenance"
    assert client.http.post("/api/supervisor/halt").json_body["state"] == "HALTED"  # no-op
    stats = container.supervisor.tick(T0 + 60)
    assert stats.halted and container.store.list_runs(job_id) == []
    state = client.http.get("/api/supervisor/state").json_body
    assert state["state"] == "HALTED" and state["last_tick_at"] == ms(T0 + 60)
    assert state["halted_at"] == ms(container.clock.now()) and state["restarted_at"] is None
    restarted = client.http.post("/api/supervisor/restart")
    assert restarted.json_body["state"] == "RUNNING"
    assert restarted.json_body["restarted_at"] == ms(container.clock.now())
    assert container.supervisor.tick(T0 + 61).runs_created == 1


def test_start_halted_setting(container: Container) -> None:
    from dataclasses import replace

    from chalicelib.bootstrap import build_container

    halted = build_container(
        replace(container.settings, start_halted=True),
        store=container.store,
        queue=container.queue,
        clock=container.clock,
    )
    assert halted.supervisor.tick(T0).halted
    record = container.store.get_supervisor()
    assert record is not None and record.reason == "started halted by configuration"


def test_tick_stats_keep_duration_and_creation_offsets(
    client: Client, container: Container, clock: FakeClock
) -> None:
    headers = {"Content-Type": "application/json"}
    for schedule in ({"rate": "rate(1 minute)"}, {"at": iso(T0 + 55)}):
        body = {"name": "s", "operations": NOOP, "schedule": schedule}
        assert client.http.post("/v1/jobs?start=true", body=json.dumps(body), headers=headers)
    clock.t = T0 + 57  # the rate's slot T0+60 is 3 s ahead; the one-time slot 2 s behind
    created = container.supervisor.tick()
    assert created.runs_created == 2 and created.duration_s >= 0
    assert (created.created_from_slot_min_s, created.created_from_slot_max_s) == (-3.0, 2.0)
    clock.t = T0 + 58
    assert container.supervisor.tick().runs_created == 0
    state = client.http.get("/api/supervisor/state").json_body
    assert state["last_tick"]["runs_created"] == 0
    assert state["last_tick"]["created_from_slot_min_s"] is None
    kept = state["last_creating_tick"]
    assert kept["tick_at"] == ms(T0 + 57) and kept["runs_created"] == 2
    assert (kept["created_from_slot_min_s"], kept["created_from_slot_max_s"]) == (-3.0, 2.0)
