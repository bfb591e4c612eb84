"""The agents' control plane: owners add agents (a principal acting as each); agents register,
beat, take tasks and report their output and end. A task is leased to one agent at a time:
another agent gets it only after its holder's deadline plus the margin has passed since the
holder last renewed it, the same deadline after which the holder kills it."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from chalicelib.domain.agents import (
    MAX_AGENTS,
    Agent,
    AgentState,
    AgentTiming,
    Selector,
    Task,
    TaskState,
    check_deadline,
    check_labels,
    check_name,
    task_id_for,
)
from chalicelib.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    OwnerLimitReached,
)
from chalicelib.domain.identity import SYSTEM, Principal, owner_of
from chalicelib.domain.logs import LogEntry, LogLevel
from chalicelib.domain.runs import Run
from chalicelib.domain.secrets import has_references
from chalicelib.domain.slices import slice_id_for
from chalicelib.domain.timefmt import iso
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus, SupervisorState
from chalicelib.ops.registry import Secrets, agent_command
from chalicelib.ports import (
    AgentStore,
    Alert,
    AlertStore,
    Clock,
    Notifier,
    RunLogStore,
    Store,
)

MAX_TAKE = 16
MAX_LINES = 1000
MAX_LINE_CHARS = 8192
MAX_TAIL_CHARS = 4096
STREAMS = {"stdout": LogLevel.INFO, "stderr": LogLevel.WARNING, "agent": LogLevel.INFO}

Gate = Callable[[Task], str | None]
"""Why a task may not be handed out now (its run paused, stopping or ended), or None."""

Stops = Callable[[Task], bool]
"""Whether a running task must be stopped (its run is stopping or ended)."""

Ended = Callable[[Task], object]
"""Told once of each task that ended for good (the slice path records the slice's outcome)."""


@dataclass(frozen=True)
class Report:
    """An agent's report on a task it holds: output lines (`seq` numbers them per attempt,
    so a line sent twice is kept once) and, at the end, its exit code and its output's tail
    (or an error, such as `killed: no contact with the control plane`)."""

    token: str
    lines: Sequence[Mapping[str, Any]] = ()
    ended: bool = False
    exit_code: int | None = None
    tail: str | None = None
    error: str | None = None


def _bad(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field}: {reason}", [{"field": field, "reason": reason}])


class AgentService:
    def __init__(
        self,
        agents: AgentStore,
        clock: Clock,
        timing: AgentTiming | None = None,
        *,
        store: Store | None = None,
        logs: RunLogStore | None = None,
    ) -> None:
        self.agents, self.clock, self.store, self.logs = agents, clock, store, logs
        self.timing = timing or AgentTiming()
        # where alerts are kept and published (the composition root sets them)
        self.alerts: AlertStore | None = store
        self.notifier: Notifier | None = None
        self.gate: Gate = self._hold
        self.stops: Stops = self._stops
        self.ended: Ended = lambda task: None
        self.secrets: Secrets | None = None
        self.who = SYSTEM

    def as_(self, who: Principal) -> AgentService:
        """The same service acting for `who`: an owner sees only its own agents."""
        scoped = copy.copy(self)
        scoped.who = who
        return scoped

    # ---- the owner's side ----------------------------------------------------------------

    def add(
        self, name: Any, principal: Any, labels: Any = None, deadline_s: Any = None
    ) -> dict[str, Any]:
        """Add an agent of the caller's, acted as by `principal` (its own credentials)."""
        if not isinstance(principal, str) or not principal or len(principal) > 2048:
            raise _bad("principal", "the id (ARN) of the principal that acts as the agent")
        if principal == self.who.id:
            raise _bad("principal", "an agent needs its own principal, not its owner's")
        deadline = self.timing.deadline_s if deadline_s is None else deadline_s
        agent = Agent(
            owner=self.who.id,
            name=check_name(name),
            principal=principal,
            created=self.clock.now(),
            labels=check_labels(labels),
            deadline_s=check_deadline(deadline, self.timing),
        )
        if len(self.agents.agents(self.who.id)) >= MAX_AGENTS:
            reason = f"at most {MAX_AGENTS} agents an owner: remove one first"
            raise OwnerLimitReached("name", "agents_per_owner", MAX_AGENTS, reason)
        if not self.agents.put_agent(agent):
            raise Conflict(
                f"agent {agent.name!r}: the name, or the principal, is already an agent's",
                name=agent.name,
            )
        return agent.doc(agent.created, self.timing)

    def listing(self) -> list[dict[str, Any]]:
        now = self.clock.now()
        return [a.doc(now, self.timing) for a in self.agents.agents(self.who.scope)]

    def named(self, name: str) -> Agent:
        found = self.agents.agents(self.who.scope, name)
        if not found:
            raise NotFound(f"agent {name!r} not found")
        return found[0]

    def get(self, name: str) -> dict[str, Any]:
        agent = self.named(name)
        doc = agent.doc(self.clock.now(), self.timing)
        doc["tasks"] = [t.doc() for t in self._running(agent)]
        return doc

    def remove(self, name: str) -> None:
        agent = self.named(name)
        if not self.agents.delete_agent(agent):
            raise NotFound(f"agent {name!r} not found")

    def _running(self, agent: Agent) -> list[Task]:
        found = (self.agents.get_task(t) for t in agent.running)
        return [t for t in found if t is not None and t.holder == agent.name]

    def check_command(self, owner: str, command: Mapping[str, Any], where: str) -> None:
        """Refuse (4xx) a command naming an agent the owner does not have, or labels none of
        its agents has (`where`: the op's place in the job, for the error's field)."""
        mine = self.agents.agents(owner)
        agent, labels = command.get("agent"), dict(command.get("labels") or {})
        if agent is not None and not any(a.name == agent for a in mine):
            raise _bad(f"{where}.agent", f"no agent named {agent!r}")
        if agent is None and not any(Selector(None, labels).matches(a) for a in mine):
            raise _bad(f"{where}.labels", "no agent has all of these labels")

    # ---- the agent's side ----------------------------------------------------------------

    def me(self) -> Agent:
        """The agent the caller acts as; Forbidden if it acts as none."""
        agent = self.agents.agent_by_principal(self.who.id)
        if agent is None:
            raise Forbidden("the caller is not an agent's principal", required_role="agent")
        return agent

    def register(self, labels: Any = None, version: Any = None) -> dict[str, Any]:
        """The agent (re)starts: its labels (if given) and version; its timing."""
        agent = self.me()
        if version is not None and (not isinstance(version, str) or not version):
            raise _bad("version", "a non-empty string")
        now = self.clock.now()
        fresh = replace(
            agent.beat(now, agent.running),
            labels=agent.labels if labels is None else check_labels(labels),
            version=version or agent.version,
        )
        if not self.agents.update_agent(fresh):
            raise Forbidden("the caller is not an agent's principal", required_role="agent")
        return {**fresh.doc(now, self.timing), **self._timing(fresh)}

    def _timing(self, agent: Agent) -> dict[str, Any]:
        return {
            "heartbeat_seconds": self.timing.heartbeat_s,
            "deadline_seconds": agent.deadline_s,
            "kill_grace_seconds": self.timing.kill_grace_s,
        }

    def heartbeat(self, held: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The agent is alive and runs these tasks (`task_id`, `token`): renew each lease
        it still holds. Says which it holds no more (to kill: another agent may have them)
        and which to stop (their run was stopped)."""
        agent = self.me()
        now = self.clock.now()
        renewed, lost, stop = [], [], []
        for item in held:
            task_id, token = _held_item(item)
            task = self.agents.get_task(task_id)
            if task is None or task.token != token or task.state != TaskState.leased:
                lost.append(task_id)
                continue
            if self.agents.renew_task(task.renew(now, self.timing.margin_s)):
                renewed.append(task_id)
                if self.stops(task):
                    stop.append(task_id)
            else:
                lost.append(task_id)
        self.agents.update_agent(agent.beat(now, tuple(renewed)))
        return {"renewed": renewed, "lost": lost, "stop": stop, **self._timing(agent)}

    def take(self, wanted: Any = 1) -> list[dict[str, Any]]:
        """Lease up to `wanted` tasks this agent may run (each one conditional write: a task
        is never handed to two agents)."""
        if isinstance(wanted, bool) or not isinstance(wanted, int) or not 1 <= wanted <= MAX_TAKE:
            raise _bad("max", f"a whole number from 1 to {MAX_TAKE}")
        agent = self.me()
        now = self.clock.now()
        if self._halted():
            self.agents.update_agent(agent.beat(now, agent.running))
            return []
        taken: list[dict[str, Any]] = []
        for task in self.agents.open_tasks(agent.owner):
            if len(taken) >= wanted:
                break
            if not task.takeable(now) or not task.selector.matches(agent):
                continue
            if self.gate(task) is not None:
                continue
            if task.state == TaskState.leased and self._reclaimed(task, agent, now):
                continue
            handed = self._lease(task, agent, now)
            if handed is not None:
                taken.append(handed)
        if taken:
            running = tuple(dict.fromkeys([*agent.running, *(t["task_id"] for t in taken)]))
            self.agents.update_agent(agent.beat(now, running))
        return taken

    def _lease(self, task: Task, agent: Agent, now: float) -> dict[str, Any] | None:
        deadline = float(task.spec.get("deadline_seconds") or agent.deadline_s)
        leased = task.lease(agent.name, uuid.uuid4().hex, deadline, now, self.timing.margin_s)
        if not self.agents.lease_task(task, leased, now):
            return None
        handed = leased.handed()
        env = dict(task.spec.get("env") or {})
        if env and self.secrets is not None and has_references(env):
            resolved = self.secrets.substitution().value(env)
            handed["command"]["env"] = resolved
            handed["command"]["secret_env"] = sorted(k for k in env if resolved[k] != env[k])
        return handed

    def _reclaimed(self, task: Task, agent: Agent, now: float) -> bool:
        """A task whose holder was lost: alerted; given up (True) if that was its last
        attempt, so the slice fails."""
        self._alert("agent_task_reclaimed", task, {"from": task.holder, "to": agent.name})
        if task.attempt <= task.retries:
            return False
        error = f"agent {task.holder} lost (no contact past its deadline), attempt {task.attempt}"
        ended = task.end(now, None, None, error)
        if self.agents.end_task(ended):
            self.ended(ended)
        return True

    def _halted(self) -> bool:
        """A supervisor halted (or started halted): agents take no new work."""
        if self.store is None:
            return False
        sup = self.store.get_supervisor()
        return sup is not None and sup.state == SupervisorState.HALTED

    def _run(self, task: Task) -> Run | None:
        if self.store is None:
            return None
        run = self.store.get_run(task.job_id, task.slot)
        return run if run is not None and run.ex_id == task.ex_id else None

    def _hold(self, task: Task) -> str | None:
        if self.store is None:
            return None
        run = self._run(task)
        if run is None:
            return "its run is gone"
        return None if run.status == ExStatus.running else f"its run is {run.status}"

    def _stops(self, task: Task) -> bool:
        if self.store is None:
            return False
        run = self._run(task)
        return run is None or run.status in TERMINAL_EX or run.status == ExStatus.stopping

    def report(self, task_id: str, report: Report, agent: Agent | None = None) -> dict[str, Any]:
        """Apply an agent's report once: its lines are kept once each (by attempt and seq),
        its end is applied once. A report for a task the agent does not hold (any more) is
        refused (409) and recorded as an alert. `agent`: the caller's, if already read."""
        agent = agent or self.me()
        task = self.agents.get_task(task_id)
        if task is None or task.owner != agent.owner:
            raise NotFound(f"task {task_id!r} not found")
        if task.token != report.token or task.holder != agent.name:
            self._alert("agent_report_refused", task, {"agent": agent.name})
            if report.error and report.error.startswith("killed"):  # an earlier attempt's
                detail = {"agent": agent.name, "error": report.error}
                self._put_alert(
                    f"agent_task_killed:{task.task_id}:{agent.name}:{report.token}",
                    "agent_task_killed",
                    task,
                    {"task_id": task.task_id, **detail},
                )
            raise Conflict(
                f"task {task_id!r}: this agent does not hold it (any more)", task_id=task_id
            )
        self._append(task, report.lines)
        if not report.ended:
            return {"task_id": task_id, "state": task.state.value, "applied": True}
        if task.state == TaskState.ended:
            return {"task_id": task_id, "state": task.state.value, "applied": False}
        tail = None if report.tail is None else report.tail[-MAX_TAIL_CHARS:]
        now = self.clock.now()
        if report.error and report.error.startswith("killed"):
            self._alert("agent_task_killed", task, {"agent": agent.name, "error": report.error})
        failed = report.error is not None or report.exit_code != 0
        if failed and task.attempt <= task.retries and not self.stops(task):
            error = report.error or f"exit code {report.exit_code}"
            released = task.release(now, error)
            applied = self.agents.release_task(released, report.token)
            answer = {"task_id": task_id, "state": TaskState.waiting.value, "applied": applied}
            return {**answer, "retry_at": iso(released.reclaim_at)}
        ended = task.end(now, report.exit_code, tail, report.error)
        applied = self.agents.end_task(ended)
        if applied:
            self.ended(ended)
        elif (self.agents.get_task(task_id) or task).token != report.token:
            raise Conflict(f"task {task_id!r}: this agent does not hold it (any more)")
        return {"task_id": task_id, "state": TaskState.ended.value, "applied": applied}

    def _append(self, task: Task, lines: Sequence[Mapping[str, Any]]) -> None:
        if not lines:
            return
        if len(lines) > MAX_LINES:
            raise _bad("lines", f"at most {MAX_LINES} lines a report")
        entries = [_entry(task, i, line) for i, line in enumerate(lines)]
        if self.logs is not None:
            self.logs.append(entries)

    # ---- the engine's side ---------------------------------------------------------------

    def offer(self, tasks: Sequence[Task]) -> int:
        """Make tasks available to agents (those that exist already are kept as they are)."""
        return self.agents.put_tasks(tasks)

    def offer_slices(self, run: Run, orders: Sequence[int]) -> None:
        """A command run's slices handed out (`RunLifecycle.send_slices`): each a task that
        waits for an agent; offering one again changes nothing."""
        command = agent_command(run.operations)
        if command is None or self.store is None:
            return
        selector = Selector(command.get("agent"), dict(command.get("labels") or {}))
        spec = {k: v for k, v in command.items() if k not in ("_op", "agent", "labels")}
        spec.update(args=run.args, retries=run.max_retries)
        now, tasks = self.clock.now(), []
        for order in orders:
            sl = self.store.get_slice(run.ex_id, slice_id_for(order))
            if sl is None:
                continue
            task_id = task_id_for(run.ex_id, sl.slice_id)
            owner = owner_of(run.config)
            task_spec = {**spec, "slice": sl.request}
            tasks.append(
                Task(
                    owner,
                    task_id,
                    run.ex_id,
                    run.job_id,
                    run.slot,
                    sl.slice_id,
                    task_spec,
                    selector,
                    now,
                )
            )
        self.agents.put_tasks(tasks)

    def sweep_lost(self) -> list[str]:
        """Alert once for each agent that became lost (its tasks may now go elsewhere)."""
        now = self.clock.now()
        lost = []
        for agent in self.agents.agents(None):
            if agent.lost_alerted_at is not None or agent.last_heartbeat is None:
                continue
            if agent.state(now, self.timing) != AgentState.lost:
                continue
            if self.agents.update_agent(replace(agent, lost_alerted_at=now)):
                self._put_alert(
                    f"agent_lost:{agent.owner}:{agent.name}:{agent.last_heartbeat}",
                    "agent_lost",
                    None,
                    {"agent": agent.name, "owner": agent.owner, "running": list(agent.running)},
                )
                lost.append(agent.name)
        return lost

    def _alert(self, reason: str, task: Task, detail: dict[str, Any]) -> None:
        key = f"{reason}:{task.task_id}:{task.attempt}"
        self._put_alert(key, reason, task, {"task_id": task.task_id, **detail})

    def _put_alert(self, key: str, reason: str, task: Task | None, detail: dict[str, Any]) -> None:
        alert = Alert(
            alert_id=str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
            created=self.clock.now(),
            reason=reason,
            job_id=None if task is None else task.job_id,
            ex_id=None if task is None else task.ex_id,
            slot=None if task is None else task.slot,
            detail=detail,
        )
        if self.alerts is not None:
            self.alerts.put_alert(alert)
        if self.notifier is not None:
            self.notifier.publish(alert)


def _held_item(item: Any) -> tuple[str, str]:
    if not isinstance(item, Mapping):
        raise _bad("tasks", "a list of {task_id, token}")
    task_id, token = item.get("task_id"), item.get("token")
    if not isinstance(task_id, str) or not isinstance(token, str):
        raise _bad("tasks", "a list of {task_id, token}")
    return task_id, token


def _entry(task: Task, index: int, line: Any) -> LogEntry:
    where = f"lines[{index}]"
    if not isinstance(line, Mapping):
        raise _bad(where, "an object {seq, ts, stream, text}")
    seq, ts, stream, text = line.get("seq"), line.get("ts"), line.get("stream"), line.get("text")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise _bad(f"{where}.seq", "a whole number from 0")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise _bad(f"{where}.ts", "epoch seconds")
    if stream not in STREAMS:
        raise _bad(f"{where}.stream", f"one of {', '.join(STREAMS)}")
    if not isinstance(text, str):
        raise _bad(f"{where}.text", "a string")
    return LogEntry(
        ex_id=task.ex_id,
        slice_id=task.slice_id,
        attempt=task.attempt,
        ts=float(ts),
        seq=seq,
        level=STREAMS[stream],
        source=str(stream),
        message=text[:MAX_LINE_CHARS],
    )
