"""The AgentStore port on DynamoDB: agents and tasks as items of the supervisor table
(models.AgentItemModel). A task's lease is one conditional write; a task and its owner's
set of open tasks change together in one transaction when it ends.

The sets are sharded so that no item nears DynamoDB's 400 KB: an owner's open tasks over
`OPEN_SHARDS` items (by task id; about 8,000 ids fit in each), the registry of agents over
`REGISTRY_SHARDS` items (by owner: an owner's agents share one, about 2,000 fit in each;
`domain.agents.MAX_AGENTS` an owner).
Shard 0 keeps the key of the unsharded item (`open#<owner>`, `agents`), so data written
before the shards is still read."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from functools import partial
from typing import Any

from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.transactions import TransactWrite

from chalicelib.adapters.dynamodb._tx import (
    Transactor,
    _conditional_update,
    _get,
    _is_conditional,
    _unavailable,
)
from chalicelib.adapters.dynamodb.models import AgentItemModel, Place, build_agent_model
from chalicelib.config import Settings
from chalicelib.domain.agents import Agent, Selector, Task, TaskState
from chalicelib.ports import AgentStore

REGISTRY = "agents"
BATCH = 100  # BatchGetItem's limit of keys
OPEN_SHARDS = 8
REGISTRY_SHARDS = 32


def _shard(text: str, shards: int) -> int:
    return zlib.crc32(text.encode()) % shards


def _sharded(key: str, shard: int) -> str:
    return key if shard == 0 else f"{key}#{shard}"


def _agent_key(principal: str) -> str:
    return f"agent#{principal}"


def _task_key(task_id: str) -> str:
    return f"task#{task_id}"


def _open_key(owner: str, task_id: str) -> str:
    return _sharded(f"open#{owner}", _shard(task_id, OPEN_SHARDS))


def _open_keys(owner: str) -> list[str]:
    return [_sharded(f"open#{owner}", k) for k in range(OPEN_SHARDS)]


def _registry_key(owner: str) -> str:
    return _sharded(REGISTRY, _shard(owner, REGISTRY_SHARDS))


def _registry_keys(owner: str | None) -> list[str]:
    """Where an owner's agents are listed (and the unsharded registry); None: everyone's."""
    if owner is None:
        return [_sharded(REGISTRY, k) for k in range(REGISTRY_SHARDS)]
    return list(dict.fromkeys([_registry_key(owner), REGISTRY]))


def agent_body(a: Agent) -> dict[str, Any]:
    return {
        "owner": a.owner,
        "name": a.name,
        "principal": a.principal,
        "created": a.created,
        "labels": dict(a.labels),
        "deadline_s": a.deadline_s,
        "version": a.version,
        "last_heartbeat": a.last_heartbeat,
        "running": list(a.running),
        "lost_alerted_at": a.lost_alerted_at,
    }


def agent_from(body: dict[str, Any]) -> Agent:
    return Agent(**{**body, "running": tuple(body.get("running") or ())})


def task_body(t: Task) -> dict[str, Any]:
    return {
        "owner": t.owner,
        "task_id": t.task_id,
        "ex_id": t.ex_id,
        "job_id": t.job_id,
        "slot": t.slot,
        "slice_id": t.slice_id,
        "spec": dict(t.spec),
        "selector": {"agent": t.selector.agent, "labels": dict(t.selector.labels)},
        "created": t.created,
        "holder": t.holder,
        "deadline_s": t.deadline_s,
        "renewed_at": t.renewed_at,
        "exit_code": t.exit_code,
        "result": t.result,
        "error": t.error,
        "ended_at": t.ended_at,
    }


def task_from(m: AgentItemModel) -> Task:
    body = dict(m.body or {})
    selector = body.pop("selector", None) or {}
    return Task(
        **body,
        selector=Selector(selector.get("agent"), selector.get("labels") or {}),
        state=TaskState(m.state or TaskState.waiting.value),
        token=m.token,
        attempt=int(m.attempt or 0),
        reclaim_at=None if m.reclaim_at is None else float(m.reclaim_at),
    )


class DynamoAgentStore(AgentStore):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.m = build_agent_model(settings)
        self.tx = Transactor(Place(settings.region, settings.ddb_endpoint).connection())

    def ensure_table(self) -> None:
        if not self.m.exists():
            self.m.create_table(wait=True, billing_mode="PAY_PER_REQUEST")

    def _task_item(self, t: Task) -> AgentItemModel:
        return self.m(
            _task_key(t.task_id),
            body=task_body(t),
            state=t.state.value,
            token=t.token,
            attempt=t.attempt,
            reclaim_at=t.reclaim_at,
        )

    # ---- agents ----------------------------------------------------------------------------

    def put_agent(self, agent: Agent) -> bool:
        A = self.m
        name = f"{agent.owner}\t{agent.name}"
        member = f"{name}\t{agent.principal}"
        item = A(_agent_key(agent.principal), body=agent_body(agent))
        registry = A(_registry_key(agent.owner))

        def build(tx: TransactWrite) -> None:
            tx.save(item, condition=A.key.does_not_exist())
            tx.update(
                registry,
                actions=[A.names.add({name}), A.members.add({member})],
                condition=~A.names.contains(name),
            )

        return self.tx._transact(build)

    def update_agent(self, agent: Agent) -> bool:
        A = self.m
        item = A(_agent_key(agent.principal))
        return _conditional_update(item, [A.body.set(agent_body(agent))], A.key.exists())

    def delete_agent(self, agent: Agent) -> bool:
        A = self.m
        name = f"{agent.owner}\t{agent.name}"

        def build(tx: TransactWrite) -> None:
            tx.delete(A(_agent_key(agent.principal)), condition=A.key.exists())
            for key in _registry_keys(agent.owner):
                tx.update(
                    A(key),
                    actions=[
                        A.names.delete({name}),
                        A.members.delete({f"{name}\t{agent.principal}"}),
                    ],
                )

        return self.tx._transact(build)

    def agent_by_principal(self, principal: str) -> Agent | None:
        m = self._read(_agent_key(principal))
        return None if m is None or m.body is None else agent_from(m.body)

    def _read(self, key: str) -> AgentItemModel | None:
        def read() -> AgentItemModel | None:
            try:
                return self.m.get(key, consistent_read=True)
            except self.m.DoesNotExist:
                return None

        return _get(read)

    def agents(self, owner: str | None, name: str | None = None) -> list[Agent]:
        members: set[str] = set()
        for registry in self._batch(_registry_keys(owner)):
            members |= registry.members or set()
        rows = sorted(tuple(m.split("\t", 2)) for m in members)
        keys = [
            _agent_key(p)
            for o, n, p in rows
            if (owner is None or o == owner) and (name is None or n == name)
        ]
        found = [agent_from(m.body) for m in self._batch(keys) if m.body]
        return sorted(found, key=lambda a: (a.owner, a.name))

    def _batch(self, keys: list[str]) -> list[AgentItemModel]:
        out: list[AgentItemModel] = []
        for i in range(0, len(keys), BATCH):
            out.extend(_get(partial(self._batch_get, keys[i : i + BATCH])))
        return out

    def _batch_get(self, keys: list[str]) -> list[AgentItemModel]:
        return list(self.m.batch_get(keys, consistent_read=True))

    # ---- tasks ---------------------------------------------------------------------------

    def put_tasks(self, tasks: Sequence[Task]) -> int:
        A = self.m
        by_shard: dict[str, set[str]] = {}
        for t in tasks:
            by_shard.setdefault(_open_key(t.owner, t.task_id), set()).add(t.task_id)
        for key, ids in by_shard.items():
            # the open set first: an id there without its task is skipped by readers, and the
            # put that follows (or its retry) fills it in
            self._add_open(key, ids)
        new = 0
        for t in tasks:
            try:
                self._task_item(t).save(condition=A.key.does_not_exist())
                new += 1
            except PutError as err:
                if not _is_conditional(err):
                    raise _unavailable(err) from err
        return new

    def _add_open(self, key: str, ids: set[str]) -> None:
        A = self.m
        try:
            A(key).update(actions=[A.members.add(ids)])
        except UpdateError as err:
            raise _unavailable(err) from err

    def get_task(self, task_id: str) -> Task | None:
        m = self._read(_task_key(task_id))
        return None if m is None or m.body is None else task_from(m)

    def open_tasks(self, owner: str, limit: int = 100) -> list[Task]:
        held: set[str] = set()
        for shard in self._batch(_open_keys(owner)):
            held |= shard.members or set()
        ids = sorted(held)
        found = [task_from(m) for m in self._batch([_task_key(i) for i in ids[:limit]]) if m.body]
        return sorted((t for t in found if t.state != TaskState.ended), key=lambda t: t.task_id)

    def lease_task(self, seen: Task, leased: Task, now: float) -> bool:
        A = self.m
        due: Condition = A.reclaim_at.does_not_exist() | (A.reclaim_at <= now)
        takeable: Condition = ((A.state == TaskState.waiting.value) & due) | (
            (A.state == TaskState.leased.value) & (A.reclaim_at <= now)
        )
        return self._save_if(leased, (A.attempt == seen.attempt) & takeable)

    def renew_task(self, renewed: Task) -> bool:
        A = self.m
        return self._save_if(
            renewed, (A.state == TaskState.leased.value) & (A.token == (renewed.token or ""))
        )

    def release_task(self, released: Task, token: str) -> bool:
        A = self.m
        return self._save_if(released, (A.state == TaskState.leased.value) & (A.token == token))

    def _save_if(self, task: Task, condition: Condition) -> bool:
        try:
            self._task_item(task).save(condition=condition)
            return True
        except PutError as err:
            if _is_conditional(err):
                return False
            raise _unavailable(err) from err

    def end_task(self, ended: Task) -> bool:
        A = self.m
        held: Condition = (A.state == TaskState.leased.value) & (A.token == (ended.token or ""))

        def build(tx: TransactWrite) -> None:
            tx.save(self._task_item(ended), condition=held)
            open_key = _open_key(ended.owner, ended.task_id)
            tx.update(A(open_key), actions=[A.members.delete({ended.task_id})])

        return self.tx._transact(build)
