"""Each event a job can ask for, recorded once by the path that sees it (on the fakes):
`skipped` by the overlap policy, `missed` by the tick's ledger (twice-run ticks too),
`late` by a late start, `timed_out`, `failed` and the operators' alert by the sweep; and
delivery from the outbox by the tick, retried until it is accepted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container
from chalicelib.domain.jobs import Job
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import FakeClock
from tests.clients import AS_OWNER, SignedClient
from tests.conftest import T0, drain
from tests.fakes.notifications import MemoryNotificationStore, MemorySender
from tests.helpers import deliver, start_due

pytestmark = pytest.mark.fakes

HOOK = {
    "type": "webhook",
    "url": "https://hooks.example.com/x",
    "secret": "{{resolve:ssm:/cadenza/dev/k}}",
}
MINUTELY = {"rate": "rate(1 minute)"}
SLOW = [{"_op": "range", "end": 2}, {"_op": "noop"}]  # runs while its slices wait


@dataclass
class World:
    """The memory container, its notifications kept by `notes` and sent by `sender`."""

    c: Container
    queue: MemoryQueue
    clock: FakeClock
    notes: MemoryNotificationStore
    sender: MemorySender


@pytest.fixture
def w(memory_container: Container, queue: MemoryQueue, clock: FakeClock) -> World:
    sender, notes = MemorySender(), MemoryNotificationStore()
    assert memory_container.notifications is not None
    memory_container.notifications.store = notes
    memory_container.notifications.sender = sender
    return World(memory_container, queue, clock, notes, sender)


def _submit(c: Container, events: list[str], **kw: Any) -> Job:
    notify: dict[str, Any] = {"events": events, "destinations": [HOOK]}
    if "late" in events:
        notify["late_seconds"] = 2
    body: dict[str, Any] = {"name": "p", "operations": SLOW, "schedule": MINUTELY}
    job, _ = c.jobs.as_(AS_OWNER).submit({**body, **kw, "notify": notify}, start=True)
    return job


def _events(notes: MemoryNotificationStore) -> list[tuple[str, str]]:
    return sorted((n.event, str(n.body["slot"])[11:19]) for n in notes.records.values())


def test_a_skipped_slot_and_a_succeeded_run(w: World) -> None:
    _submit(w.c, ["skipped", "succeeded"], workers=1)
    w.c.supervisor.tick(T0 + 56)
    assert start_due(w.c, w.queue, w.clock, T0 + 60) == ["running"]
    w.c.supervisor.tick(T0 + 116)
    assert start_due(w.c, w.queue, w.clock, T0 + 120) == ["skipped"]
    drain(w.c, w.queue)
    assert _events(w.notes) == [("skipped", "08:02:00"), ("succeeded", "08:01:00")]


def test_missed_slots_once_each_across_ticks(w: World) -> None:
    _submit(w.c, ["missed"], misfire_grace_seconds=0, catchup="none")
    w.c.supervisor.tick(T0)
    w.c.supervisor.tick(T0 + 302)  # 08:01..08:05 passed unseen
    w.c.supervisor.tick(T0 + 303)
    missed = _events(w.notes)
    assert missed and {e for e, _ in missed} == {"missed"}
    assert len(missed) == len(set(missed))
    w.c.supervisor.tick(T0 + 304)
    assert len(w.sender.sent) == len(missed)  # each delivered once


def test_a_late_start(w: World) -> None:
    _submit(w.c, ["late"], operations=[{"_op": "noop"}, {"_op": "noop"}])
    w.c.supervisor.tick(T0 + 56)
    assert start_due(w.c, w.queue, w.clock, T0 + 70) == ["completed"]  # 10 s late
    (late,) = w.notes.records.values()
    assert late.event == "late" and late.body["detail"]["late_by_seconds"] >= 2


def test_on_time_is_not_late(w: World) -> None:
    _submit(w.c, ["late"], operations=[{"_op": "noop"}, {"_op": "noop"}])
    w.c.supervisor.tick(T0 + 56)
    assert start_due(w.c, w.queue, w.clock, T0 + 60) == ["completed"]
    assert w.notes.records == {}


def test_timed_out_makes_failed_timed_out_and_the_alert(w: World) -> None:
    body = {"name": "h", "operations": SLOW, "timeout_seconds": 100, "lease_seconds": 30}
    notify = {"events": ["failed", "timed_out", "hanging"], "destinations": [HOOK]}
    _, run = w.c.jobs.as_(AS_OWNER).submit({**body, "notify": notify}, start=True)
    assert run is not None
    for _ in range(4):  # the start keeps getting lost
        w.queue.take()
        w.clock.advance(31)
        w.c.supervisor.tick(w.clock.now())
    assert sorted(n.event for n in w.notes.records.values()) == ["alert", "failed", "timed_out"]
    assert {n.body["link"] for n in w.notes.records.values()} == {f"/v1/ex/{run.ex_id}"}
    # delivered by the tick that saw them (the alert too: through the sender, not at once)
    assert sorted(n.event for n in w.sender.sent) == ["alert", "failed", "timed_out"]


def test_fails_twice_then_delivered_once(w: World) -> None:
    w.sender.failures = 2
    _submit(w.c, ["succeeded"], operations=[{"_op": "noop"}, {"_op": "noop"}], schedule=None)
    drain(w.c, w.queue)
    for _ in range(5):
        w.c.supervisor.tick(w.clock.now())
        w.clock.advance(200)
    (note,) = w.notes.records.values()
    assert (w.sender.attempts, len(w.sender.sent), note.status, note.attempts) == (
        3,
        1,
        "delivered",
        3,
    )
    assert w.notes.emits == 1  # one conditional write on the finishing path


def test_a_worker_that_dies_between_the_runs_end_and_its_event(
    w: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start message comes back (its handler died): the run is found ended, and its
    event recorded then; a further redelivery records nothing more."""
    _submit(w.c, ["succeeded"], operations=[{"_op": "noop"}, {"_op": "noop"}], schedule=None)
    [start] = w.queue.take()
    emit = w.notes.emit

    def dies(notes: Any) -> int:
        monkeypatch.setattr(w.notes, "emit", emit)
        raise RuntimeError("the worker died")

    monkeypatch.setattr(w.notes, "emit", dies)
    with pytest.raises(RuntimeError):
        deliver(w.c, start)
    (run,) = w.c.store.list_runs(start.body["job_id"])
    assert run.status == ExStatus.completed and w.notes.records == {}
    assert deliver(w.c, start) == "dropped"
    assert deliver(w.c, start) == "dropped"
    assert [n.event for n in w.notes.records.values()] == ["succeeded"]


def test_a_run_completed_by_hand_is_succeeded_once_and_a_stop_or_rerun_tells_nothing(
    w: World, client: SignedClient
) -> None:
    """`_resolve?action=complete` ends a run `completed`: `succeeded`, once (a repeat of the
    route changes nothing). A stop and a rerun end no run as failed or completed: no event."""
    job = _submit(w.c, ["succeeded", "failed"], schedule=None)
    assert start_due(w.c, w.queue, w.clock, w.clock.now()) == ["running"]  # slices queued
    (run,) = w.c.store.list_runs(job.job_id)
    for _ in range(2):
        r = client.http.post(f"/v1/ex/{run.ex_id}/_resolve?action=complete")
        assert (r.status_code, r.json_body["status"]) == (200, "completed")
    (note,) = w.notes.records.values()
    assert (note.event, note.body["ex_id"], note.body["status"]) == (
        "succeeded",
        run.ex_id,
        "completed",
    )
    assert note.body["detail"] == {"reason": "resolved: completed by an operator"}

    other = _submit(w.c, ["succeeded", "failed"], schedule=None, name="q")
    assert start_due(w.c, w.queue, w.clock, w.clock.now()) == ["running"]
    (running,) = w.c.store.list_runs(other.job_id)
    r = client.http.post(f"/v1/ex/{running.ex_id}/_resolve?action=rerun")
    assert r.status_code == 200, r.json_body
    r = client.http.post(f"/v1/ex/{r.json_body['ex_id']}/_stop?blocking=false")
    assert r.status_code == 200, r.json_body
    drain(w.c, w.queue)
    assert [n.event for n in w.notes.records.values()] == ["succeeded"]
