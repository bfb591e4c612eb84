"""Command jobs end to end on the in-memory fakes: submitted through the API, their slices
offered to agents (not to the slice queue), taken and reported through the agents' routes,
the run finished by the agents' reports; output is the run's log."""

from __future__ import annotations

import functools
import json
import threading
from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.agents import Task
from chalicelib.domain.identity import Principal
from chalicelib.ports import FakeClock
from chalicelib.services.agents import Report
from tests.clients import AS_OWNER, USERS, SignedClient
from tests.conftest import drain
from tests.fakes.runlogs import MemoryRunLogStore
from tests.helpers import race

pytestmark = pytest.mark.fakes

BOX1 = USERS.add("runs-box1")
BOX2 = USERS.add("runs-box2")
JSON = {"Content-Type": "application/json"}


def _post(client: SignedClient, path: str, body: Any) -> Any:
    return client.http.post(path, body=json.dumps(body), headers=JSON)


def _agents(client: SignedClient) -> tuple[SignedClient, SignedClient]:
    for name, user in (("box1", BOX1), ("box2", BOX2)):
        r = _post(
            client, "/v1/agents", {"name": name, "principal": user.arn, "labels": {"site": "lab"}}
        )
        assert r.status_code == 201, r.json_body
    return client.as_(BOX1), client.as_(BOX2)


def _job(**command: Any) -> dict[str, Any]:
    op = {"_op": "command", "argv": ["echo", "hi"], "labels": {"site": "lab"}, **command}
    return {"name": "cmd", "operations": [{"_op": "range", "end": 3}, op], "workers": 2}


def _run_slice(agent: SignedClient, exit_code: int = 0) -> dict[str, Any] | None:
    tasks = _post(agent, "/v1/agent/tasks", {"max": 1}).json_body["tasks"]
    if not tasks:
        return None
    (task,) = tasks
    line = {"seq": 0, "ts": 1.0, "stream": "stdout", "text": f"slice {task['slice_id']}"}
    end = {"exit_code": exit_code, "tail": f"slice {task['slice_id']}\n"}
    body = {"token": task["token"], "lines": [line], "end": end}
    r = _post(agent, f"/v1/agent/tasks/{task['task_id']}/report", body)
    assert r.status_code == 200, r.json_body
    return dict(task)


def test_a_command_job_runs_on_agents_within_its_workers(
    client: SignedClient, container: Container, queue: MemoryQueue
) -> None:
    box1, box2 = _agents(client)
    r = _post(client, "/v1/jobs?start=true", _job())
    assert r.status_code in (201, 202), r.json_body
    ex_id = r.json_body["ex_id"]
    drain(container, queue)
    assert queue.take() == []  # nothing for the slice workers
    two = _post(box1, "/v1/agent/tasks", {"max": 4}).json_body["tasks"]
    assert len(two) == 2  # the job's workers
    for task in two:
        body = {"token": task["token"], "end": {"exit_code": 0, "tail": "ok\n"}}
        assert _post(box1, f"/v1/agent/tasks/{task['task_id']}/report", body).status_code == 200
    assert _run_slice(box2) is not None
    ex = client.http.get(f"/v1/ex/{ex_id}").json_body
    assert ex["_status"] == "completed", ex
    logs = container.agents.logs
    assert isinstance(logs, MemoryRunLogStore)
    assert [e.message for e in logs.read(ex_id).entries] == ["slice 000002"]


def test_a_one_slice_command_job_is_not_run_inline(
    client: SignedClient, container: Container, queue: MemoryQueue
) -> None:
    box1, _ = _agents(client)
    job = _job(agent="box1", labels={})
    job["operations"][0] = {"_op": "noop"}
    ex_id = _post(client, "/v1/jobs?start=true", job).json_body["ex_id"]
    drain(container, queue)
    assert _run_slice(box1) is not None
    assert client.http.get(f"/v1/ex/{ex_id}").json_body["_status"] == "completed"


def test_a_failing_command_fails_its_slice_after_its_retries(
    client: SignedClient, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    box1, box2 = _agents(client)
    job = _job()
    job["operations"][0] = {"_op": "noop"}
    job["max_retries"] = 1
    ex_id = _post(client, "/v1/jobs?start=true", job).json_body["ex_id"]
    drain(container, queue)
    assert _run_slice(box1, exit_code=3) is not None  # attempt 1 fails: waits again
    assert client.http.get(f"/v1/ex/{ex_id}").json_body["_status"] == "running"
    assert _run_slice(box2) is None  # not before its retry backoff (1 s)
    clock.advance(1)
    assert _run_slice(box2, exit_code=3) is not None
    assert client.http.get(f"/v1/ex/{ex_id}").json_body["_status"] == "failed"


def test_pause_holds_tasks_back_and_stop_tells_the_agent_to_stop(
    client: SignedClient, container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    box1, box2 = _agents(client)
    ex_id = _post(client, "/v1/jobs?start=true", _job()).json_body["ex_id"]
    drain(container, queue)
    (task,) = _post(box1, "/v1/agent/tasks", {"max": 1}).json_body["tasks"]
    assert _post(client, f"/v1/ex/{ex_id}/_pause", {}).status_code == 200
    assert _post(box2, "/v1/agent/tasks", {"max": 4}).json_body["tasks"] == []
    held = {"tasks": [{"task_id": task["task_id"], "token": task["token"]}]}
    assert _post(box1, "/v1/agent/heartbeat", held).json_body["stop"] == []
    assert _post(client, f"/v1/ex/{ex_id}/_resume", {}).status_code == 200
    assert _post(client, f"/v1/ex/{ex_id}/_stop", {}).status_code == 200
    assert _post(box1, "/v1/agent/heartbeat", held).json_body["stop"] == [task["task_id"]]
    assert _post(box2, "/v1/agent/tasks", {"max": 4}).json_body["tasks"] == []


def test_a_halted_supervisor_hands_out_nothing(
    client: SignedClient, admin_client: SignedClient, container: Container, queue: MemoryQueue
) -> None:
    box1, _ = _agents(client)
    _post(client, "/v1/jobs?start=true", _job())
    drain(container, queue)
    container.supervisor.tick(container.clock.now())
    assert _post(admin_client, "/v1/supervisor/halt", {}).status_code == 200
    assert _post(box1, "/v1/agent/tasks", {"max": 4}).json_body["tasks"] == []
    assert _post(admin_client, "/v1/supervisor/restart", {}).status_code == 200
    assert len(_post(box1, "/v1/agent/tasks", {"max": 4}).json_body["tasks"]) == 2


def test_a_command_naming_no_agent_of_the_owners_is_refused(client: SignedClient) -> None:
    _agents(client)
    r = _post(client, "/v1/jobs?start=true", _job(agent="box9", labels={}))
    assert r.status_code == 400 and r.json_body["errors"][0]["field"] == "operations[1].agent"
    r = _post(client, "/v1/jobs?start=true", _job(labels={"site": "moon"}))
    assert r.status_code == 400 and r.json_body["errors"][0]["field"] == "operations[1].labels"
    r = _post(client, "/v1/jobs?start=true", _job(labels={}))  # neither agent nor labels
    assert r.status_code == 400 and r.json_body["errors"][0]["field"].startswith("operations[1]")
    r = _post(
        client, "/v1/jobs", {**_job(), "operations": [*_job()["operations"], {"_op": "noop"}]}
    )
    assert r.status_code == 400 and "only processor" in r.json_body["message"]


def test_agents_are_nodes_of_the_cluster_state(
    client: SignedClient, container: Container, queue: MemoryQueue
) -> None:
    box1, _ = _agents(client)
    _post(client, "/v1/jobs?start=true", _job())
    drain(container, queue)
    two = _post(box1, "/v1/agent/tasks", {"max": 4}).json_body["tasks"]
    state = client.http.get("/v1/cluster/state").json_body
    node = state["agent:box1"]
    assert node["state"] == "connected" and node["hostname"] == "box1"
    assert sorted(w["worker_id"] for w in node["active"]) == sorted(t["task_id"] for t in two)
    assert state["agent:box2"]["state"] == "disconnected" and state["agent:box2"]["active"] == []
    assert "agent:box1" not in client.as_(None).http.get("/v1/cluster/state").body.decode()
    other = client.as_(USERS.get("other")).http.get("/v1/cluster/state").json_body
    assert not [k for k in other if k.startswith("agent:")]


def test_ten_agents_run_a_hundred_slices_each_once(
    client: SignedClient, container: Container, queue: MemoryQueue
) -> None:
    names = [f"many{i}" for i in range(10)]
    users = [USERS.get(n) or USERS.add(n) for n in names]
    owner = container.agents.as_(AS_OWNER)
    for name, user in zip(names, users, strict=True):
        owner.add(name, user.arn, {"site": "many"})
    job = _job(labels={"site": "many"})
    job["operations"][0] = {"_op": "range", "end": 100}
    job["workers"] = 10
    ex_id = _post(client, "/v1/jobs?start=true", job).json_body["ex_id"]
    drain(container, queue)
    ended: list[str] = []
    finish = container.agents.ended
    lock = threading.Lock()

    def counted(task: Task) -> object:
        with lock:
            ended.append(task.task_id)
        return finish(task)

    container.agents.ended = counted

    def agent(user_arn: str) -> None:
        me = container.agents.as_(Principal(user_arn))
        idle = 0
        while idle < 50:
            tasks = me.take(2)
            idle = 0 if tasks else idle + 1
            for t in tasks:
                me.report(t["task_id"], Report(t["token"], (), True, 0, "ok"))

    race(*(functools.partial(agent, u.arn) for u in users))
    assert sorted(ended) == sorted(f"{ex_id}.{i:06d}" for i in range(100))  # each once
    slices = container.store.list_slices(ex_id)
    assert len(slices) == 100 and {s.attempts for s in slices} == {1}
    assert client.http.get(f"/v1/ex/{ex_id}").json_body["_status"] == "completed"
