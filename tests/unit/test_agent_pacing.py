"""How often the agent calls the control plane (its loop on a fake clock and a fake API): it
takes work as soon as it has room (again at once after a take that found work or a task
that ended, whose end it reports at once), polls an idle control plane at a pace that
slows to `max_idle_s`, and heartbeats once a period whatever else it does."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from cadenza_tools.agent.agent import Agent, Failures, Settings
from cadenza_tools.agent.journal import Journal


class Unreachable(Exception):
    pass


class Refused(Exception):
    pass


class Other(Exception):
    pass


class FakeApi:
    """Answers the agent's calls; records (time, path) of each; hands out `tasks` once."""

    def __init__(self, agent_now: list[float], tasks: list[dict[str, Any]] | None = None) -> None:
        self.now, self.tasks = agent_now, list(tasks or [])
        self.calls: list[tuple[float, str]] = []
        self.reports: list[dict[str, Any]] = []

    def post(self, path: str, params: Any = None, json: Any = None) -> Any:
        self.calls.append((self.now[0], path))
        if path == "/v1/agent/register":
            return {"heartbeat_seconds": 10, "kill_grace_seconds": 1}
        if path == "/v1/agent/heartbeat":
            held = [t["task_id"] for t in json["tasks"]]
            return {"renewed": held, "lost": [], "stop": []}
        if path == "/v1/agent/tasks":
            handed, self.tasks = self.tasks[: json["max"]], self.tasks[json["max"] :]
            return {"tasks": handed}
        self.reports.append(json)
        return {"applied": True}

    def paths(self, path: str) -> list[float]:
        return [at for at, p in self.calls if p == path]


def _agent(tmp_path: Path, api: FakeApi, now: list[float], max_tasks: int = 4) -> Agent:
    failures = Failures((Unreachable,), (Refused,), Other)
    agent = Agent(api, Journal(tmp_path), Settings(max_tasks=max_tasks), failures)
    agent.now = lambda: now[0]
    assert agent.register()
    return agent


def _task(n: int) -> dict[str, Any]:
    return {
        "task_id": f"ex.{n:06d}",
        "attempt": 1,
        "token": f"tok{n}",
        "deadline_seconds": 120,
        "command": {"argv": ["sleep", "0.3"]},
    }


def test_an_idle_agent_polls_at_a_pace_that_slows_to_max_idle(tmp_path: Path) -> None:
    now = [1000.0]
    api = FakeApi(now)
    agent = _agent(tmp_path, api, now)
    pauses = []
    while now[0] < 1060:
        pause = agent.step()
        pauses.append(pause)
        now[0] += pause
    assert pauses[:7] == [0.5, 1.0, 2.0, 4.0, 2.5, 2.5, 5.0]  # 2.5: to the beat, from it
    takes, beats = api.paths("/v1/agent/tasks"), api.paths("/v1/agent/heartbeat")
    assert [round(b - 1000) for b in beats] == [0, 10, 20, 30, 40, 50]
    assert all(later - earlier <= 5 for earlier, later in itertools.pairwise(takes))
    assert 12 <= len(takes) <= 16  # about one a 5 s once idle: with the beats, 0.3 a second


def test_work_found_and_a_task_ended_make_it_ask_again_at_once(tmp_path: Path) -> None:
    now = [1000.0]
    api = FakeApi(now, [_task(0), _task(1)])
    agent = _agent(tmp_path, api, now, max_tasks=1)
    assert agent.step() == pytest.approx(0.2)  # took one, full now: only its process is looked at
    assert api.paths("/v1/agent/tasks") == [1000.0]
    agent.idle_s = 4.0  # as if long idle before
    end, pause = time.monotonic() + 20, -1.0
    while not api.reports and time.monotonic() < end:  # the command ends
        now[0] += 0.01
        pause = agent.step()
        time.sleep(0.05)
    assert api.reports and api.reports[0]["end"]["exit_code"] == 0  # reported at once
    ended_at = api.paths(f"/v1/agent/tasks/{_task(0)['task_id']}/report")[0]
    assert ended_at < 1010 and api.paths("/v1/agent/heartbeat") == [1000.0]  # before a beat
    assert api.paths("/v1/agent/tasks")[-1] == ended_at  # and took the next at once
    assert pause == pytest.approx(0.2)
    agent.journal.close()
