"""The agent store on DynamoDB (moto) keeps an owner's open tasks and the registry of agents
in sharded items, none near the 400 KB item limit, and still reads what was written in the
unsharded items (`open#<owner>`, `agents`) before; an owner's agents are capped (429)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib.adapters.dynamodb import agents as store_module
from chalicelib.adapters.dynamodb.agents import DynamoAgentStore
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.domain.agents import Agent, Selector, Task, TaskState, task_id_for
from chalicelib.domain.errors import OwnerLimitReached
from chalicelib.domain.identity import Principal
from chalicelib.ports import FakeClock
from chalicelib.services import agents as service_module
from chalicelib.services.agents import AgentService
from tests import conftest

T0 = 1_800_000_000.0


@pytest.fixture
def store(aws: None) -> Iterator[DynamoAgentStore]:
    settings = conftest.test_settings()
    DynamoStore(settings).ensure_tables()
    yield DynamoAgentStore(settings)


def _task(owner: str, n: int) -> Task:
    slice_id = f"{n:06d}"
    return Task(owner, task_id_for("ex1", slice_id), "ex1", "j", "s", slice_id, {}, Selector(), T0)


def _keys(store: DynamoAgentStore, prefix: str) -> dict[str, set[str]]:
    return {m.key: set(m.members or ()) for m in store.m.scan() if m.key.startswith(prefix)}


def test_open_tasks_spread_over_shards_and_all_are_read(store: DynamoAgentStore) -> None:
    tasks = [_task("arn:owner", n) for n in range(60)]
    assert store.put_tasks(tasks) == 60
    shards = _keys(store, "open#arn:owner")
    assert len(shards) == store_module.OPEN_SHARDS  # 60 ids land in every one of 8
    assert set().union(*shards.values()) == {t.task_id for t in tasks}
    assert [t.task_id for t in store.open_tasks("arn:owner")] == sorted(t.task_id for t in tasks)
    leased = tasks[7].lease("box1", "tok", 60, T0, 20)
    assert store.lease_task(tasks[7], leased, T0)
    assert store.end_task(leased.end(T0 + 1, 0, "ok", None))
    assert tasks[7].task_id not in set().union(*_keys(store, "open#arn:owner").values())
    assert len(store.open_tasks("arn:owner")) == 59


def test_what_the_unsharded_items_hold_is_still_read(store: DynamoAgentStore) -> None:
    A = store.m
    old = _task("arn:owner", 1)
    store.put_tasks([old])
    for key in _keys(store, "open#"):
        A(key).delete()
    A("open#arn:owner").update(actions=[A.members.add({old.task_id})])  # as written before
    assert [t.task_id for t in store.open_tasks("arn:owner")] == [old.task_id]
    agent = Agent("arn:someone", "box", "arn:box", T0)
    assert store_module._registry_key(agent.owner) != "agents"  # a sharded owner
    A("agent#arn:box", body=store_module.agent_body(agent)).save()
    A("agents").update(
        actions=[A.names.add({"arn:someone\tbox"}), A.members.add({"arn:someone\tbox\tarn:box"})]
    )
    assert [a.name for a in store.agents("arn:someone")] == ["box"]
    assert [a.name for a in store.agents(None)] == ["box"]
    assert store.delete_agent(agent)
    assert store.agents("arn:someone") == [] and not _keys(store, "agents")["agents"]


def test_owners_agents_are_listed_from_their_own_shard(store: DynamoAgentStore) -> None:
    owners = [f"arn:owner{i}" for i in range(12)]
    for i, owner in enumerate(owners):
        assert store.put_agent(Agent(owner, "box", f"arn:box{i}", T0))
    assert not store.put_agent(Agent(owners[0], "box", "arn:other", T0))  # the name is taken
    registries = _keys(store, "agents")
    assert len(registries) > 1
    assert all(len(members) < len(owners) for members in registries.values())
    for i, owner in enumerate(owners):
        assert [a.principal for a in store.agents(owner)] == [f"arn:box{i}"]
    assert len(store.agents(None)) == len(owners)
    task = _task(owners[0], 0)
    store.put_tasks([task])
    got = store.get_task(task.task_id)
    assert got is not None and got.state == TaskState.waiting


def test_an_owner_has_at_most_max_agents(
    store: DynamoAgentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "MAX_AGENTS", 2)
    owner = AgentService(store, FakeClock(T0)).as_(Principal("arn:owner"))
    owner.add("box1", "arn:box1")
    owner.add("box2", "arn:box2")
    with pytest.raises(OwnerLimitReached) as refused:
        owner.add("box3", "arn:box3")
    assert refused.value.status_code == 429
    assert refused.value.details["max"] == 2 and "at most 2 agents" in str(refused.value)
