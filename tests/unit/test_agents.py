"""Agents' states and tasks' leases (domain), and the control plane's service on the
in-memory store: a task goes to one agent, and to another only after its holder's deadline
plus the margin; reports are applied once."""

from __future__ import annotations

import pytest

from chalicelib.domain.agents import (
    Agent,
    AgentState,
    AgentTiming,
    Selector,
    Task,
    TaskState,
    agent_state,
    check_labels,
    task_id_for,
)
from chalicelib.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from chalicelib.domain.identity import Principal
from chalicelib.domain.timefmt import iso
from chalicelib.ports import FakeClock
from chalicelib.services.agents import AgentService, Report
from tests.fakes.agents import MemoryAgentStore
from tests.fakes.runlogs import MemoryRunLogStore

T0 = 1_800_000_000.0
TIMING = AgentTiming(heartbeat_s=10, deadline_s=60, margin_s=20, kill_grace_s=5)
OWNER = Principal("arn:owner")
OTHER = Principal("arn:other")
BOX1, BOX2 = Principal("arn:box1"), Principal("arn:box2")


class Alerts:
    def __init__(self) -> None:
        self.alerts: list[object] = []

    def put_alert(self, alert: object) -> None:
        self.alerts.append(alert)

    def reasons(self) -> list[str]:
        return [getattr(a, "reason", "") for a in self.alerts]


def test_state_follows_the_last_heartbeat() -> None:
    assert agent_state(T0, 60, T0 + 30, TIMING) == AgentState.connected
    assert agent_state(T0, 60, T0 + 31, TIMING) == AgentState.disconnected
    assert agent_state(T0, 60, T0 + 79, TIMING) == AgentState.disconnected
    assert agent_state(T0, 60, T0 + 80, TIMING) == AgentState.lost


def test_a_leased_task_is_takeable_only_after_its_deadline_plus_the_margin() -> None:
    task = Task("o", "e.000000", "e", "j", "s", "000000", {}, Selector("box1"), T0)
    assert task.takeable(T0)
    leased = task.lease("box1", "tok", 60, T0, 20)
    assert leased.attempt == 1 and leased.reclaim_at == T0 + 80
    assert not leased.takeable(T0 + 79.9)
    assert leased.takeable(T0 + 80)
    assert not leased.renew(T0 + 50, 20).takeable(T0 + 129)
    assert not leased.end(T0 + 1, 0, "", None).takeable(T0 + 1000)


def test_selectors_match_by_name_or_by_every_label() -> None:
    a = Agent("o", "box1", "p", T0, labels={"gpu": "yes", "os": "linux"})
    assert Selector("box1").matches(a) and not Selector("box2").matches(a)
    assert Selector(labels={"gpu": "yes"}).matches(a)
    assert not Selector(labels={"gpu": "yes", "os": "mac"}).matches(a)


def test_labels_are_checked() -> None:
    assert check_labels({"gpu": "yes"}) == {"gpu": "yes"}
    with pytest.raises(InvalidInput, match=r"labels\.GPU"):
        check_labels({"GPU": "yes"})
    with pytest.raises(InvalidInput, match="labels"):
        check_labels(["gpu"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def parts(clock: FakeClock) -> tuple[AgentService, MemoryRunLogStore, Alerts]:
    logs, alerts = MemoryRunLogStore(), Alerts()
    service = AgentService(MemoryAgentStore(), clock, TIMING, logs=logs)
    service.alerts = alerts  # type: ignore[assignment]  # a list is all these tests read
    owner = service.as_(OWNER)
    owner.add("box1", BOX1.id, {"gpu": "yes"})
    owner.add("box2", BOX2.id, {"gpu": "yes"})
    return service, logs, alerts


def _task(n: int, selector: Selector | None = None) -> Task:
    slice_id = f"{n:06d}"
    return Task(
        OWNER.id,
        task_id_for("ex1", slice_id),
        "ex1",
        "job1",
        "slot1",
        slice_id,
        {"argv": ["true"], "retries": 1},
        selector or Selector(labels={"gpu": "yes"}),
        T0,
    )


def test_an_owner_adds_lists_and_sees_only_its_agents(
    parts: tuple[AgentService, MemoryRunLogStore, Alerts],
) -> None:
    service, _, _ = parts
    assert [a["name"] for a in service.as_(OWNER).listing()] == ["box1", "box2"]
    assert service.as_(OTHER).listing() == []
    with pytest.raises(NotFound):
        service.as_(OTHER).get("box1")
    with pytest.raises(Conflict):
        service.as_(OWNER).add("box1", "arn:box3")
    with pytest.raises(Conflict):  # one principal acts as one agent
        service.as_(OTHER).add("box9", BOX1.id)
    with pytest.raises(InvalidInput, match="principal"):
        service.as_(OWNER).add("box3", OWNER.id)
    assert service.as_(OWNER).get("box1")["state"] == "disconnected"  # never heard from


def test_only_an_agents_principal_acts_as_an_agent(
    parts: tuple[AgentService, MemoryRunLogStore, Alerts],
) -> None:
    service, _, _ = parts
    with pytest.raises(Forbidden):
        service.as_(OWNER).take(1)
    registered = service.as_(BOX1).register({"gpu": "yes", "os": "linux"}, "1.2.3")
    assert registered["state"] == "connected" and registered["deadline_seconds"] == 60
    assert registered["labels"] == {"gpu": "yes", "os": "linux"}


def test_a_task_goes_to_one_agent_and_to_another_only_after_deadline_and_margin(
    parts: tuple[AgentService, MemoryRunLogStore, Alerts], clock: FakeClock
) -> None:
    service, _, alerts = parts
    service.offer([_task(0)])
    first = service.as_(BOX1).take(4)
    assert [t["task_id"] for t in first] == ["ex1.000000"]
    assert first[0]["command"]["argv"] == ["true"] and first[0]["deadline_seconds"] == 60
    clock.advance(79)
    assert service.as_(BOX2).take(4) == []  # box1's deadline + margin not yet passed
    clock.advance(1)
    second = service.as_(BOX2).take(4)
    assert [(t["agent"], t["attempt"]) for t in second] == [("box2", 2)]
    assert "agent_task_reclaimed" in alerts.reasons()
    # box1 comes back: its lease is gone, it must kill its copy
    beat = service.as_(BOX1).heartbeat([{"task_id": "ex1.000000", "token": first[0]["token"]}])
    assert beat["lost"] == ["ex1.000000"] and beat["renewed"] == []


def test_heartbeats_renew_the_lease(
    parts: tuple[AgentService, MemoryRunLogStore, Alerts], clock: FakeClock
) -> None:
    service, _, _ = parts
    service.offer([_task(0)])
    (held,) = service.as_(BOX1).take(1)
    for _ in range(10):
        clock.advance(30)
        beat = service.as_(BOX1).heartbeat([{"task_id": held["task_id"], "token": held["token"]}])
        assert beat["renewed"] == [held["task_id"]]
        assert service.as_(BOX2).take(1) == []
    assert service.as_(OWNER).get("box1")["running_tasks"] == [held["task_id"]]


def test_reports_are_applied_once_and_refused_from_a_former_holder(
    parts: tuple[AgentService, MemoryRunLogStore, Alerts], clock: FakeClock
) -> None:
    service, logs, alerts = parts
    service.offer([_task(0)])
    ended: list[Task] = []
    service.ended = ended.append
    (held,) = service.as_(BOX1).take(1)
    lines = [{"seq": i, "ts": T0 + i, "stream": "stdout", "text": f"line {i}"} for i in range(3)]
    box1 = service.as_(BOX1)
    box1.report(held["task_id"], Report(held["token"], lines[:2]))
    box1.report(held["task_id"], Report(held["token"], lines))  # a replay, plus one line
    end = Report(held["token"], (), True, 0, "line 2\n")
    assert box1.report(held["task_id"], end)["applied"] is True
    assert box1.report(held["task_id"], end)["applied"] is False  # replayed end
    assert [e.message for e in logs.read("ex1").entries] == ["line 0", "line 1", "line 2"]
    assert len(ended) == 1 and ended[0].exit_code == 0 and ended[0].result == "line 2\n"
    with pytest.raises(Conflict):
        service.as_(BOX2).report(held["task_id"], Report("not-the-token"))
    assert "agent_report_refused" in alerts.reasons()
    assert service.as_(BOX2).take(1) == []  # ended: never handed out again


def test_a_killed_task_and_a_lost_agent_raise_alerts(
    parts: tuple[AgentService, MemoryRunLogStore, Alerts], clock: FakeClock
) -> None:
    service, _, alerts = parts
    service.offer([_task(0)])
    (held,) = service.as_(BOX1).take(1)
    clock.advance(61)
    killed = Report(held["token"], (), True, -15, None, "killed: no contact for 60 s")
    service.as_(BOX1).report(held["task_id"], killed)
    assert "agent_task_killed" in alerts.reasons()
    clock.advance(100)
    assert service.sweep_lost() == ["box1"]
    assert service.sweep_lost() == []  # once
    assert service.as_(OWNER).get("box1")["state"] == "lost"


def test_the_gate_holds_tasks_back_and_stops_running_ones(
    parts: tuple[AgentService, MemoryRunLogStore, Alerts],
) -> None:
    service, _, _ = parts
    service.offer([_task(0), _task(1)])
    (held,) = service.as_(BOX1).take(1)
    service.gate = lambda task: "paused"
    assert service.as_(BOX2).take(4) == []
    beat = service.as_(BOX1).heartbeat([{"task_id": held["task_id"], "token": held["token"]}])
    assert beat["stop"] == []  # paused: what runs goes on
    service.stops = lambda task: True
    beat = service.as_(BOX1).heartbeat([{"task_id": held["task_id"], "token": held["token"]}])
    assert beat["stop"] == [held["task_id"]]


def test_a_failed_attempt_waits_for_another_agent_while_retries_remain(
    parts: tuple[AgentService, MemoryRunLogStore, Alerts], clock: FakeClock
) -> None:
    service, _, _ = parts
    ended: list[Task] = []
    service.ended = ended.append
    retried = _task(0)
    service.offer([Task(**{**retried.__dict__, "spec": {"argv": ["false"], "retries": 1}})])
    (first,) = service.as_(BOX1).take(1)
    out = service.as_(BOX1).report(first["task_id"], Report(first["token"], (), True, 1))
    assert out["state"] == "waiting" and ended == []
    clock.advance(1)  # the retry backoff of a first failed attempt
    (second,) = service.as_(BOX2).take(1)
    assert second["attempt"] == 2
    out = service.as_(BOX2).report(second["task_id"], Report(second["token"], (), True, 1))
    assert out["state"] == "ended" and [t.exit_code for t in ended] == [1]


def test_a_failed_attempt_is_offered_again_only_after_its_backoff(
    parts: tuple[AgentService, MemoryRunLogStore, Alerts], clock: FakeClock
) -> None:
    service, _, _ = parts
    task = _task(0)
    service.offer([Task(**{**task.__dict__, "spec": {"argv": ["false"], "retries": 3}})])
    for attempt, backoff in ((1, 1.0), (2, 2.0), (3, 4.0)):
        (held,) = service.as_(BOX1).take(1)
        assert held["attempt"] == attempt
        clock.advance(5)  # it ran for a while
        out = service.as_(BOX1).report(held["task_id"], Report(held["token"], (), True, 1))
        assert out["state"] == "waiting"
        assert out["retry_at"] == iso(clock.now() + backoff)
        clock.advance(backoff - 0.1)
        assert service.as_(BOX1).take(1) == [] and service.as_(BOX2).take(1) == []
        clock.advance(0.1)
    (last,) = service.as_(BOX2).take(1)
    assert last["attempt"] == 4


def test_the_retry_backoff_doubles_up_to_a_cap() -> None:
    task = _task(0)
    for attempt, backoff in ((1, 1), (2, 2), (5, 16), (10, 512), (11, 900), (40, 900)):
        failed = Task(**{**task.__dict__, "state": TaskState.leased, "attempt": attempt})
        released = failed.release(T0, "exit code 1")
        assert released.state == TaskState.waiting and released.reclaim_at == T0 + backoff
        assert not released.takeable(T0 + backoff - 0.5) and released.takeable(T0 + backoff)


def test_a_lost_holders_last_attempt_is_given_up(
    parts: tuple[AgentService, MemoryRunLogStore, Alerts], clock: FakeClock
) -> None:
    service, _, _ = parts
    ended: list[Task] = []
    service.ended = ended.append
    last = _task(0)
    service.offer([Task(**{**last.__dict__, "spec": {"argv": ["true"]}})])  # no retries
    service.as_(BOX1).take(1)
    clock.advance(80)
    assert service.as_(BOX2).take(1) == []
    assert ended and ended[0].error is not None and "lost" in ended[0].error


def test_a_selector_by_name_and_bad_input(
    parts: tuple[AgentService, MemoryRunLogStore, Alerts],
) -> None:
    service, _, _ = parts
    service.offer([_task(0, Selector("box2"))])
    assert service.as_(BOX1).take(4) == []
    assert len(service.as_(BOX2).take(4)) == 1
    with pytest.raises(InvalidInput, match="max"):
        service.as_(BOX1).take(0)
    service.check_command(OWNER.id, {"agent": "box1"}, "op")
    with pytest.raises(InvalidInput, match=r"op\.agent"):
        service.check_command(OWNER.id, {"agent": "box9"}, "op")
    with pytest.raises(InvalidInput, match=r"op\.labels"):
        service.check_command(OWNER.id, {"labels": {"gpu": "no"}}, "op")
    assert TaskState.ended.value == "ended"
