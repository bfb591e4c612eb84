"""Remote agents: processes on an owner's own machines that take tasks (slices of `command`
runs) from the control plane, each leased to one agent with a deadline.

An agent is an owner's: the owner names a principal (its own credentials) that acts as the
agent. The agent renews its tasks' leases with each heartbeat. If it cannot reach the control
plane for `deadline_s` (measured from when it sent its last renewal that succeeded) it kills
its tasks; the control plane hands a task to another agent only once `deadline_s + margin_s`
has passed since its last renewal, so two copies of one task never run at the same time.
Pure: no I/O, time is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.slices import retry_delay
from chalicelib.domain.timefmt import iso

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
LABEL_KEY = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,62}$")
LABEL_VALUE = re.compile(r"^[A-Za-z0-9._/:-]{0,128}$")
MAX_LABELS = 32
MAX_AGENTS = 1000  # an owner's agents (listed together in one registry item)
VERSION = re.compile(r"^[A-Za-z0-9.+_-]{1,64}$")


@dataclass(frozen=True)
class AgentTiming:
    """How often agents beat, when one counts as disconnected, its default deadline (after
    which it kills its tasks when it cannot reach the control plane) and the control plane's
    margin on top of that deadline before a task goes to another agent. The margin covers
    the agent's kill grace (SIGTERM, then SIGKILL) and the drift of two clocks' rates."""

    heartbeat_s: float = 10.0
    deadline_s: float = 120.0
    margin_s: float = 30.0
    kill_grace_s: float = 10.0

    @property
    def disconnected_after_s(self) -> float:
        return 3 * self.heartbeat_s


class AgentState(StrEnum):
    connected = "connected"  # beat within the last three heartbeat periods
    disconnected = "disconnected"  # not heard from lately, or never since it was added
    lost = "lost"  # silent past its deadline plus the margin: its tasks may go elsewhere


@dataclass(frozen=True)
class Agent:
    """An owner's agent: its name, the principal that acts as it, the labels that select
    it, the version it runs, and its deadline."""

    owner: str
    name: str
    principal: str
    created: float
    labels: Mapping[str, str] = field(default_factory=dict)
    deadline_s: float = AgentTiming.deadline_s
    version: str | None = None
    last_heartbeat: float | None = None
    running: tuple[str, ...] = ()  # the task ids it said it runs, at its last heartbeat
    lost_alerted_at: float | None = None

    def state(self, now: float, timing: AgentTiming) -> AgentState:
        if self.last_heartbeat is None:
            return AgentState.disconnected
        return agent_state(self.last_heartbeat, self.deadline_s, now, timing)

    def beat(self, now: float, running: tuple[str, ...]) -> Agent:
        return replace(self, last_heartbeat=now, running=running, lost_alerted_at=None)

    def doc(self, now: float, timing: AgentTiming) -> dict[str, Any]:
        return {
            "name": self.name,
            "owner": self.owner,
            "principal": self.principal,
            "state": self.state(now, timing).value,
            "labels": dict(self.labels),
            "version": self.version,
            "deadline_seconds": self.deadline_s,
            "created": iso(self.created),
            "last_heartbeat": iso(self.last_heartbeat),
            "running_tasks": list(self.running),
        }


def agent_state(last_seen: float, deadline_s: float, now: float, timing: AgentTiming) -> AgentState:
    """The state of an agent last heard from at `last_seen`."""
    silent = now - last_seen
    if silent <= timing.disconnected_after_s:
        return AgentState.connected
    if silent >= deadline_s + timing.margin_s:
        return AgentState.lost
    return AgentState.disconnected


def check_name(name: Any, where: str = "name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        reason = "1 to 63 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        raise InvalidInput(f"{where}: {reason}", [{"field": where, "reason": reason}])
    return name


def check_labels(labels: Any, where: str = "labels") -> dict[str, str]:
    """A label set: at most 32 `key: value` strings."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise InvalidInput(f"{where}: an object", [{"field": where, "reason": "an object"}])
    if len(labels) > MAX_LABELS:
        reason = f"at most {MAX_LABELS} labels"
        raise InvalidInput(f"{where}: {reason}", [{"field": where, "reason": reason}])
    for key, value in labels.items():
        if not LABEL_KEY.match(key) or not isinstance(value, str) or not LABEL_VALUE.match(value):
            reason = "keys of a-z, 0-9, '._/-' (1 to 63); values of A-Za-z0-9 '._/:-' (to 128)"
            at = f"{where}.{key}"
            raise InvalidInput(f"{at}: {reason}", [{"field": at, "reason": reason}])
    return dict(labels)


def check_deadline(value: Any, timing: AgentTiming, where: str = "deadline_seconds") -> float:
    """A deadline: a number of seconds, at least three heartbeats, at most a day."""
    low, high = 3 * timing.heartbeat_s, 86_400.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        reason = f"a number of seconds from {low:g} to {high:g}"
        raise InvalidInput(f"{where}: {reason}", [{"field": where, "reason": reason}])
    return float(value)


# ---- tasks -----------------------------------------------------------------------------------


class TaskState(StrEnum):
    waiting = "waiting"  # no agent holds it
    leased = "leased"  # one agent holds it, until its lease runs out (plus the margin)
    ended = "ended"  # reported ended (exit code), or given up


@dataclass(frozen=True)
class Selector:
    """Which agents may take a task: the one named, or any with all of these labels."""

    agent: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, agent: Agent) -> bool:
        if self.agent is not None:
            return agent.name == self.agent
        return all(agent.labels.get(k) == v for k, v in self.labels.items())

    def doc(self) -> dict[str, Any]:
        return {"agent": self.agent} if self.agent is not None else {"labels": dict(self.labels)}


@dataclass(frozen=True)
class Task:
    """One slice of a command run, for an agent. `attempt` counts its leases; `reclaim_at`
    is when (server time) another agent may take it: while leased, its last renewal plus
    the holder's deadline plus the margin; while waiting after a failed attempt, the end of
    that attempt's retry backoff (`retry_delay`, the slices' own policy)."""

    owner: str
    task_id: str
    ex_id: str
    job_id: str
    slot: str
    slice_id: str
    spec: Mapping[str, Any]
    selector: Selector
    created: float
    state: TaskState = TaskState.waiting
    holder: str | None = None
    token: str | None = None
    attempt: int = 0
    deadline_s: float | None = None  # the lease's deadline, told to its holder
    renewed_at: float | None = None
    reclaim_at: float | None = None
    exit_code: int | None = None
    result: Any = None
    error: str | None = None
    ended_at: float | None = None

    def takeable(self, now: float) -> bool:
        """Waiting (past the backoff of a failed attempt), or its holder's lease and the
        margin have run out."""
        if self.state == TaskState.waiting:
            return self.reclaim_at is None or now >= self.reclaim_at
        return (
            self.state == TaskState.leased
            and self.reclaim_at is not None
            and now >= self.reclaim_at
        )

    def lease(self, agent: str, token: str, deadline_s: float, now: float, margin_s: float) -> Task:
        return replace(
            self,
            state=TaskState.leased,
            holder=agent,
            token=token,
            attempt=self.attempt + 1,
            deadline_s=deadline_s,
            renewed_at=now,
            reclaim_at=now + deadline_s + margin_s,
        )

    def renew(self, now: float, margin_s: float) -> Task:
        deadline = self.deadline_s or 0.0
        return replace(self, renewed_at=now, reclaim_at=now + deadline + margin_s)

    def release(self, now: float, error: str | None) -> Task:
        """Waiting again, for another attempt (its last one failed), after a backoff that
        doubles with each failed attempt (1 s, 2 s, 4 s ..., at most 15 minutes)."""
        return replace(
            self,
            state=TaskState.waiting,
            holder=None,
            token=None,
            reclaim_at=now + retry_delay(self.attempt),
            error=error,
        )

    @property
    def retries(self) -> int:
        """How many attempts after the first it may have (the job's max_retries)."""
        return int(self.spec.get("retries", 0))

    def end(self, now: float, exit_code: int | None, result: Any, error: str | None) -> Task:
        return replace(
            self,
            state=TaskState.ended,
            exit_code=exit_code,
            result=result,
            error=error,
            ended_at=now,
            reclaim_at=None,
        )

    def doc(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "ex_id": self.ex_id,
            "job_id": self.job_id,
            "slot": self.slot,
            "slice_id": self.slice_id,
            "state": self.state.value,
            "agent": self.holder,
            "attempt": self.attempt,
            "deadline_seconds": self.deadline_s,
            "renewed_at": iso(self.renewed_at),
            "reclaim_at": iso(self.reclaim_at),
            "exit_code": self.exit_code,
            "error": self.error,
            "selector": self.selector.doc(),
        }

    def handed(self) -> dict[str, Any]:
        """What its holder is told when it takes it: what to run, its lease and deadline."""
        return {**self.doc(), "token": self.token, "command": dict(self.spec)}


def task_id_for(ex_id: str, slice_id: str) -> str:
    return f"{ex_id}.{slice_id}"
