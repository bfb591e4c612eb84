"""The agents' routes through chalice.test.Client on moto (the DynamoDB adapter too), each
agent signing with its own principal's keys; the race of two agents for one task on
DynamoDB Local (moto cannot referee a conditional race)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from chalicelib.adapters.dynamodb.agents import DynamoAgentStore
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.bootstrap import Container
from chalicelib.config import Settings
from chalicelib.domain.agents import Selector, Task, task_id_for
from chalicelib.domain.identity import Principal
from chalicelib.ports import FakeClock
from chalicelib.services.agents import AgentService
from tests import conftest
from tests.clients import OWNER, USERS, SignedClient
from tests.conftest import T0
from tests.fakes.runlogs import MemoryRunLogStore
from tests.helpers import race

BOX1 = USERS.add("agent-box1")
BOX2 = USERS.add("agent-box2")


def _task(owner: str, n: int, labels: dict[str, str] | None = None) -> Task:
    slice_id = f"{n:06d}"
    return Task(
        owner,
        task_id_for("ex1", slice_id),
        "ex1",
        "job1",
        "slot1",
        slice_id,
        {"argv": ["echo", str(n)], "retries": 1},
        Selector(labels=labels or {"site": "lab"}),
        T0,
    )


@pytest.fixture(autouse=True)
def runless(container: Container) -> None:
    """These tasks belong to no run: hand them out (the run's gate is test_agent_runs')."""
    container.agents.gate = lambda task: None
    container.agents.stops = lambda task: False


@pytest.fixture
def logs(container: Container) -> MemoryRunLogStore:
    logs = MemoryRunLogStore()
    container.agents.logs = logs
    return logs


def _add(client: SignedClient, name: str, principal: str, **more: Any) -> Any:
    r = client.http.post(
        "/v1/agents",
        body=_json({"name": name, "principal": principal, **more}),
        headers={"Content-Type": "application/json"},
    )
    return r


def _json(value: Any) -> str:
    return json.dumps(value)


def _post(client: SignedClient, path: str, body: Any) -> Any:
    return client.http.post(path, body=_json(body), headers={"Content-Type": "application/json"})


def test_an_agent_registers_takes_reports_and_is_listed(
    client: SignedClient, container: Container, logs: MemoryRunLogStore, clock: FakeClock
) -> None:
    r = _add(client, "box1", BOX1.arn, labels={"site": "lab"}, deadline_seconds=60)
    assert r.status_code == 201, r.json_body
    assert r.json_body["state"] == "disconnected"
    box1 = client.as_(BOX1)
    r = _post(box1, "/v1/agent/register", {"version": "0.1.0"})
    assert r.status_code == 200 and r.json_body["heartbeat_seconds"] == 10
    container.agents.offer([_task(OWNER.arn, 0)])
    r = _post(box1, "/v1/agent/tasks", {"max": 2})
    (task,) = r.json_body["tasks"]
    assert task["command"]["argv"] == ["echo", "0"] and task["deadline_seconds"] == 60
    line = {"seq": 0, "ts": T0, "stream": "stdout", "text": "0"}
    report = {"token": task["token"], "lines": [line], "end": {"exit_code": 0, "tail": "0\n"}}
    path = f"/v1/agent/tasks/{task['task_id']}/report"
    assert _post(box1, path, report).json_body["applied"] is True
    assert _post(box1, path, report).json_body["applied"] is False
    assert [e.message for e in logs.read("ex1").entries] == ["0"]
    listed = client.http.get("/v1/agents").json_body
    assert [(a["name"], a["state"], a["version"]) for a in listed] == [
        ("box1", "connected", "0.1.0")
    ]
    assert client.http.get("/v1/agents/box1").json_body["labels"] == {"site": "lab"}
    assert client.as_(BOX2).http.get("/v1/agents/box1").status_code == 404
    clock.advance(31)
    assert client.http.get("/v1/agents/box1").json_body["state"] == "disconnected"
    clock.advance(60)
    assert client.http.get("/v1/agents/box1").json_body["state"] == "lost"


def test_bad_input_and_callers_that_are_not_agents(client: SignedClient) -> None:
    r = _add(client, "Box 1", BOX1.arn)
    assert r.status_code == 400 and r.json_body["errors"][0]["field"] == "name"
    r = _add(client, "box1", BOX1.arn, labels={"site": 3})
    assert r.status_code == 400 and r.json_body["errors"][0]["field"] == "labels.site"
    r = _add(client, "box1", BOX1.arn, deadline_seconds=1)
    assert r.status_code == 400 and r.json_body["errors"][0]["field"] == "deadline_seconds"
    assert _add(client, "box1", BOX1.arn).status_code == 201
    assert _add(client, "box1", BOX2.arn).status_code == 409
    r = _post(client, "/v1/agent/tasks", {"max": 1})  # the owner is not an agent
    assert r.status_code == 403
    r = _post(client.as_(BOX1), "/v1/agent/tasks", {"max": 100})
    assert r.status_code == 400 and r.json_body["errors"][0]["field"] == "max"
    r = _post(client.as_(BOX1), "/v1/agent/tasks/ex9.000000/report", {"lines": []})
    assert r.status_code == 400 and r.json_body["errors"][0]["field"] == "token"
    r = _post(client.as_(BOX1), "/v1/agent/tasks/ex9.000000/report", {"token": "x"})
    assert r.status_code == 404
    assert client.http.delete("/v1/agents/box1").status_code == 200
    assert client.http.get("/v1/agents/box1").status_code == 404
    assert _post(client.as_(BOX1), "/v1/agent/heartbeat", {}).status_code == 403


def test_a_former_holder_is_refused_after_the_task_moved(
    client: SignedClient, container: Container, clock: FakeClock
) -> None:
    for name, user in (("box1", BOX1), ("box2", BOX2)):
        assert _add(client, name, user.arn, labels={"site": "lab"}).status_code == 201
    container.agents.offer([_task(OWNER.arn, 0)])
    (first,) = _post(client.as_(BOX1), "/v1/agent/tasks", {}).json_body["tasks"]
    deadline = first["deadline_seconds"]
    clock.advance(deadline + container.agents.timing.margin_s - 1)
    assert _post(client.as_(BOX2), "/v1/agent/tasks", {}).json_body["tasks"] == []
    clock.advance(1)
    (second,) = _post(client.as_(BOX2), "/v1/agent/tasks", {}).json_body["tasks"]
    assert second["attempt"] == 2
    path = f"/v1/agent/tasks/{first['task_id']}/report"
    late = {"token": first["token"], "end": {"exit_code": 0}}
    r = _post(client.as_(BOX1), path, late)
    assert r.status_code == 409
    held = [{"task_id": first["task_id"], "token": first["token"]}]
    assert _post(client.as_(BOX1), "/v1/agent/heartbeat", {"tasks": held}).json_body["lost"] == [
        first["task_id"]
    ]


@pytest.mark.ddblocal
def test_two_agents_racing_for_tasks_take_each_once(ddb_local: str) -> None:
    settings: Settings = replace(conftest.test_settings(), dynamodb_endpoint=ddb_local)
    DynamoStore(settings).ensure_tables()
    clock = FakeClock(T0)
    a, b = (AgentService(DynamoAgentStore(settings), clock) for _ in range(2))
    owner = a.as_(Principal("arn:owner"))
    owner.add("box1", "arn:box1", {"site": "lab"})
    owner.add("box2", "arn:box2", {"site": "lab"})
    tasks = [_task("arn:owner", n) for n in range(8)]
    assert a.offer(tasks) == 8 and a.offer(tasks) == 0
    box1, box2 = a.as_(Principal("arn:box1")), b.as_(Principal("arn:box2"))
    taken: list[str] = []
    for _ in range(8):
        got = race(lambda: box1.take(1), lambda: box2.take(1))
        taken += [t["task_id"] for batch in got for t in batch]
    assert sorted(taken) == sorted(t.task_id for t in tasks)  # each once
    # past the deadline and margin, both race for every task again: each goes to one
    clock.advance(a.timing.deadline_s + a.timing.margin_s)
    again: list[dict[str, Any]] = []
    for _ in range(8):
        got = race(lambda: box1.take(1), lambda: box2.take(1))
        again += [t for batch in got for t in batch]
    assert sorted(t["task_id"] for t in again) == sorted(taken)
    assert {t["attempt"] for t in again} == {2}
