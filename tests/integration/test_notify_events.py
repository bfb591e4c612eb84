"""Each event a job can ask for, recorded once by the path that sees it (on the fakes):
`skipped` by the overlap policy, `missed` by the tick's ledger (twice-run ticks too),
`late` by a late start, `timed_out`, `failed` and the operators' alert by the sweep; and
delivery from the outbox by the tick, retried until it is accepted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.adapters.memory import MemoryNotifier, MemoryQueue
from chalicelib.bootstrap import Container, build_container, set_container
from chalicelib.domain.jobs import Job
from chalicelib.ports import FakeClock
from tests.clients import AS_OWNER
from tests.conftest import T0, drain
from tests.conftest import test_settings as settings_for
from tests.fakes import MemoryAssetStore, MemoryBlobStore, MemoryStore
from tests.fakes.notifications import MemoryNotificationStore, MemorySender
from tests.helpers import start_due

pytestmark = pytest.mark.fakes

HOOK = {
    "type": "webhook",
    "url": "https://hooks.example.com/x",
    "secret": "{{resolve:ssm:/cadenza/dev/k}}",
}
MINUTELY = {"rate": "rate(1 minute)"}
SLOW = [{"_op": "range", "end": 2}, {"_op": "noop"}]  # runs while its slices wait


@pytest.fixture
def sender() -> MemorySender:
    return MemorySender()


@pytest.fixture
def notes() -> MemoryNotificationStore:
    return MemoryNotificationStore()


@pytest.fixture
def container(
    clock: FakeClock, queue: MemoryQueue, sender: MemorySender, notes: MemoryNotificationStore
) -> Iterator[Container]:
    settings = settings_for()
    c = build_container(
        settings,
        store=MemoryStore(settings),
        queue=queue,
        clock=clock,
        notifier=MemoryNotifier(),
        asset_store=MemoryAssetStore(),
        files=MemoryBlobStore(),
        notification_store=notes,
        sender=sender,
    )
    c.worker.sleep = clock.advance
    set_container(c)
    yield c
    set_container(None)


def _submit(c: Container, events: list[str], **kw: Any) -> Job:
    notify: dict[str, Any] = {"events": events, "destinations": [HOOK]}
    if "late" in events:
        notify["late_seconds"] = 2
    body: dict[str, Any] = {"name": "p", "operations": SLOW, "schedule": MINUTELY}
    job, _ = c.jobs.as_(AS_OWNER).submit({**body, **kw, "notify": notify}, start=True)
    return job


def _events(notes: MemoryNotificationStore) -> list[tuple[str, str]]:
    return sorted((n.event, str(n.body["slot"])[11:19]) for n in notes.records.values())


def test_a_skipped_slot_and_a_succeeded_run(
    container: Container, queue: MemoryQueue, clock: FakeClock, notes: MemoryNotificationStore
) -> None:
    _submit(container, ["skipped", "succeeded"], workers=1)
    container.supervisor.tick(T0 + 56)
    assert start_due(container, queue, clock, T0 + 60) == ["running"]
    container.supervisor.tick(T0 + 116)
    assert start_due(container, queue, clock, T0 + 120) == ["skipped"]
    drain(container, queue)
    assert _events(notes) == [("skipped", "08:02:00"), ("succeeded", "08:01:00")]


def test_missed_slots_once_each_across_ticks(
    container: Container, notes: MemoryNotificationStore, sender: MemorySender
) -> None:
    _submit(container, ["missed"], misfire_grace_seconds=0, catchup="none")
    container.supervisor.tick(T0)
    container.supervisor.tick(T0 + 302)  # 08:01..08:05 passed unseen
    container.supervisor.tick(T0 + 303)
    missed = _events(notes)
    assert missed and {e for e, _ in missed} == {"missed"}
    assert len(missed) == len(set(missed))
    container.supervisor.tick(T0 + 304)
    assert len(sender.sent) == len(missed)  # each delivered once


def test_a_late_start(
    container: Container, queue: MemoryQueue, clock: FakeClock, notes: MemoryNotificationStore
) -> None:
    _submit(container, ["late"], operations=[{"_op": "noop"}, {"_op": "noop"}])
    container.supervisor.tick(T0 + 56)
    assert start_due(container, queue, clock, T0 + 70) == ["completed"]  # 10 s late
    (late,) = notes.records.values()
    assert late.event == "late" and late.body["detail"]["late_by_seconds"] >= 2


def test_on_time_is_not_late(
    container: Container, queue: MemoryQueue, clock: FakeClock, notes: MemoryNotificationStore
) -> None:
    _submit(container, ["late"], operations=[{"_op": "noop"}, {"_op": "noop"}])
    container.supervisor.tick(T0 + 56)
    assert start_due(container, queue, clock, T0 + 60) == ["completed"]
    assert notes.records == {}


def test_timed_out_makes_failed_timed_out_and_the_alert(
    container: Container,
    queue: MemoryQueue,
    clock: FakeClock,
    notes: MemoryNotificationStore,
    sender: MemorySender,
) -> None:
    body = {"name": "h", "operations": SLOW, "timeout_seconds": 100, "lease_seconds": 30}
    notify = {"events": ["failed", "timed_out", "hanging"], "destinations": [HOOK]}
    _, run = container.jobs.as_(AS_OWNER).submit({**body, "notify": notify}, start=True)
    assert run is not None
    for _ in range(4):  # the start keeps getting lost
        queue.take()
        clock.advance(31)
        container.supervisor.tick(clock.now())
    assert sorted(n.event for n in notes.records.values()) == ["alert", "failed", "timed_out"]
    assert {n.body["link"] for n in notes.records.values()} == {f"/v1/ex/{run.ex_id}"}
    # delivered by the tick that saw them (the alert too: through the sender, not at once)
    assert sorted(n.event for n in sender.sent) == ["alert", "failed", "timed_out"]


@pytest.mark.parametrize("sender", [MemorySender(failures=2)])
def test_fails_twice_then_delivered_once(
    container: Container,
    queue: MemoryQueue,
    clock: FakeClock,
    notes: MemoryNotificationStore,
    sender: MemorySender,
) -> None:
    _submit(container, ["succeeded"], operations=[{"_op": "noop"}, {"_op": "noop"}], schedule=None)
    drain(container, queue)
    for _ in range(5):
        container.supervisor.tick(clock.now())
        clock.advance(200)
    (note,) = notes.records.values()
    assert (sender.attempts, len(sender.sent), note.status, note.attempts) == (3, 1, "delivered", 3)
    assert notes.emits == 1  # one conditional write on the finishing path
