"""Agents and their tasks in memory (the AgentStore port): each write checks its condition
and applies under one lock, as DynamoDB's conditional writes do."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

from chalicelib.domain.agents import Agent, Task, TaskState
from chalicelib.ports import AgentStore


class MemoryAgentStore(AgentStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._agents: dict[str, Agent] = {}  # by principal
        self._tasks: dict[str, Task] = {}

    def ensure_table(self) -> None:
        return None

    def _named(self, owner: str, name: str) -> Agent | None:
        return next((a for a in self._agents.values() if a.owner == owner and a.name == name), None)

    def put_agent(self, agent: Agent) -> bool:
        with self._lock:
            if agent.principal in self._agents or self._named(agent.owner, agent.name):
                return False
            self._agents[agent.principal] = agent
            return True

    def update_agent(self, agent: Agent) -> bool:
        with self._lock:
            if agent.principal not in self._agents:
                return False
            self._agents[agent.principal] = agent
            return True

    def delete_agent(self, agent: Agent) -> bool:
        with self._lock:
            return self._agents.pop(agent.principal, None) is not None

    def agent_by_principal(self, principal: str) -> Agent | None:
        with self._lock:
            return self._agents.get(principal)

    def agents(self, owner: str | None, name: str | None = None) -> list[Agent]:
        with self._lock:
            found = [
                a
                for a in self._agents.values()
                if (owner is None or a.owner == owner) and (name is None or a.name == name)
            ]
        return sorted(found, key=lambda a: (a.owner, a.name))

    def put_tasks(self, tasks: Sequence[Task]) -> int:
        with self._lock:
            new = [t for t in tasks if t.task_id not in self._tasks]
            self._tasks.update((t.task_id, t) for t in new)
            return len(new)

    def get_task(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def open_tasks(self, owner: str, limit: int = 100) -> list[Task]:
        with self._lock:
            found = [
                t for t in self._tasks.values() if t.owner == owner and t.state != TaskState.ended
            ]
        return sorted(found, key=lambda t: t.task_id)[:limit]

    def lease_task(self, seen: Task, leased: Task, now: float) -> bool:
        with self._lock:
            current = self._tasks.get(seen.task_id)
            if current is None or current.attempt != seen.attempt or not current.takeable(now):
                return False
            self._tasks[seen.task_id] = leased
            return True

    def _held(self, task: Task) -> bool:
        current = self._tasks.get(task.task_id)
        return (
            current is not None
            and current.state == TaskState.leased
            and current.token == task.token
        )

    def renew_task(self, renewed: Task) -> bool:
        with self._lock:
            if not self._held(renewed):
                return False
            self._tasks[renewed.task_id] = renewed
            return True

    def release_task(self, released: Task, token: str) -> bool:
        with self._lock:
            if not self._held(replace(released, token=token)):
                return False
            self._tasks[released.task_id] = released
            return True

    def end_task(self, ended: Task) -> bool:
        with self._lock:
            if not self._held(ended):
                return False
            self._tasks[ended.task_id] = ended
            return True
