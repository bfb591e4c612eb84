"""The supervisor's own events survive its death (issue #11, docs/notifications.md): a
write the tick makes (a timeout, a worker given up on, a missed slot's ledger record) marks
the events it makes on the record itself, in the same write; if the supervisor dies before
recording them, the next tick's sweep finds the mark and records them, once. On the fakes
and on DynamoDB Local."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest

from chalicelib.adapters.dynamodb.notifications import DynamoNotificationStore
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory import MemoryNotifier, MemoryQueue
from chalicelib.bootstrap import Container, build_container
from chalicelib.domain.notifications import Notification
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import FakeClock, NotificationStore
from tests.clients import AS_OWNER
from tests.conftest import T0
from tests.conftest import test_settings as make_settings
from tests.fakes import MemoryStore
from tests.fakes.notifications import MemoryNotificationStore, MemorySender

HOOK = {
    "type": "webhook",
    "url": "https://hooks.example.com/x",
    "secret": "{{resolve:ssm:/cadenza/dev/k}}",
}
SLOW = [{"_op": "range", "end": 2}, {"_op": "noop"}]  # runs while its slices wait
RUN_EVENTS = {"failed", "succeeded", "missed", "skipped", "late", "hanging", "timed_out"}


class SupervisorDied(Exception):
    """The injected failure: the supervisor's process ends here."""


class Dying:
    """An outbox that kills the supervisor on the first emit of a run's event."""

    def __init__(self, store: NotificationStore) -> None:
        self.store, self.deaths, self.emits = store, 0, 0
        self.emit_real = store.emit

    def emit(self, notes: Sequence[Notification]) -> int:
        self.emits += 1
        if self.deaths == 0 and any(n.event in RUN_EVENTS for n in notes):
            self.deaths += 1
            raise SupervisorDied
        return self.emit_real(notes)


@dataclass
class World:
    c: Container
    queue: MemoryQueue
    clock: FakeClock
    dying: Dying

    def told(self) -> list[tuple[str, str]]:
        """Each run or slot event in the outbox or settled: (event, run or slot)."""
        assert self.c.notifications is not None
        notes = [n for s in ("pending", "delivered", "failed") for n in self._listing(s)]
        return sorted(
            (n.event, str(n.body["slot"] if n.event == "missed" else n.body["ex_id"]))
            for n in notes
            if n.event in RUN_EVENTS
        )

    def _listing(self, status: str) -> list[Notification]:
        assert self.c.notifications is not None
        return self.c.notifications.listing(status, 1000)


@pytest.fixture(params=["memory", pytest.param("ddblocal", marks=pytest.mark.ddblocal)])
def w(request: pytest.FixtureRequest) -> Iterator[World]:
    clock, queue = FakeClock(T0), MemoryQueue()
    settings = make_settings(due_shards=1, lease_shards=1)  # fewer queries a tick: quicker
    parts: dict[str, Any] = {"sender": MemorySender(), "notifier": MemoryNotifier()}
    if request.param == "ddblocal":
        settings = replace(settings, dynamodb_endpoint=request.getfixturevalue("ddb_local"))
        store: Any = DynamoStore(settings)
        store.ensure_tables()
        parts["notification_store"] = DynamoNotificationStore(settings)
    else:
        store = MemoryStore(settings)
        parts["notification_store"] = MemoryNotificationStore()
    c = build_container(settings, store=store, queue=queue, clock=clock, **parts)
    c.worker.sleep = lambda s: None
    dying = Dying(parts["notification_store"])
    parts["notification_store"].emit = dying.emit
    yield World(c, queue, clock, dying)


def _submit(c: Container, events: list[str], **kw: Any) -> tuple[str, str | None]:
    body: dict[str, Any] = {"name": "p", "operations": SLOW, **kw}
    notify = {"events": events, "destinations": [HOOK]}
    job, run = c.jobs.as_(AS_OWNER).submit({**body, "notify": notify}, start=True)
    return job.job_id, None if run is None else run.ex_id


def test_a_timeout_whose_supervisor_died_before_its_events_is_told_by_the_next_tick(
    w: World,
) -> None:
    _, ex_id = _submit(w.c, ["failed", "timed_out"], timeout_seconds=100, lease_seconds=30)
    assert ex_id is not None
    while w.dying.deaths == 0:  # the start keeps getting lost, until the run times out
        w.queue.take()
        w.clock.advance(31)
        stats = w.c.supervisor.tick(w.clock.now())
    assert stats.errors == 1  # the sweep's write landed, then the supervisor died
    run = w.c.store.get_run_by_ex(ex_id)
    assert run is not None and run.status == ExStatus.failed
    assert run.notify_due is not None and set(run.notify_due) == {"failed", "timed_out"}
    assert w.told() == []
    w.clock.advance(1)
    assert w.c.supervisor.tick(w.clock.now()).notify_recovered == 1
    assert w.told() == [("failed", ex_id), ("timed_out", ex_id)]
    (timed_out,) = [n for n in w._listing("delivered") if n.event == "timed_out"]
    assert timed_out.body["detail"]["reason"] == "timed out"
    run = w.c.store.get_run_by_ex(ex_id)
    assert run is not None and run.notify_due is None and run.check_at is None
    emits = w.dying.emits
    w.clock.advance(60)  # off the sweep: nothing more
    assert w.c.supervisor.tick(w.clock.now()).stalled_read == 0
    assert w.dying.emits == emits
    assert w.told() == [("failed", ex_id), ("timed_out", ex_id)]
    assert w.c.store.live_runs() == []


def test_a_supervisor_that_lives_records_them_at_once_and_leaves_no_mark(w: World) -> None:
    w.dying.deaths = 1  # no death
    _, ex_id = _submit(w.c, ["timed_out"], timeout_seconds=100, lease_seconds=30)
    assert ex_id is not None
    while not w.told():
        w.queue.take()
        w.clock.advance(31)
        assert w.c.supervisor.tick(w.clock.now()).notify_recovered == 0
    assert w.told() == [("timed_out", ex_id)]
    run = w.c.store.get_run_by_ex(ex_id)
    assert run is not None and run.status == ExStatus.failed and run.notify_due is None


def test_missed_slots_whose_supervisor_died_before_their_events_are_told_once(
    w: World,
) -> None:
    job_id, _ = _submit(
        w.c,
        ["missed"],
        operations=[{"_op": "noop"}, {"_op": "noop"}],
        schedule={"rate": "rate(1 minute)"},
        misfire_grace_seconds=0,
        catchup="none",
    )
    w.c.supervisor.tick(T0)
    with pytest.raises(SupervisorDied):
        w.c.supervisor.tick(T0 + 302)  # 08:01..08:05 passed unseen
    missed = [r.slot for r in w.c.store.list_runs(job_id) if r.status == ExStatus.missed]
    assert missed and w.told() == []
    w.c.supervisor.tick(T0 + 303)
    w.c.supervisor.tick(T0 + 304)
    missed = [r.slot for r in w.c.store.list_runs(job_id) if r.status == ExStatus.missed]
    assert w.told() == sorted(("missed", slot) for slot in missed)
    assert all(
        r.notify_due is None and r.check_at is None
        for r in w.c.store.list_runs(job_id)
        if r.status == ExStatus.missed
    )
