"""A burst's start messages come earlier: the tick sizes each second's lead from how many
runs it starts on it and the store's claim rate, and the start worker claims that early,
so the burst's second finds its runs claimed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.bootstrap import Container, build_container
from chalicelib.domain.runs import MAX_LEAD_S, START_LEAD_S, burst_lead
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import FakeClock, StartMessage, start_messages
from chalicelib.services.entry import PreparedStart
from tests.clients import AS_OWNER
from tests.conftest import T0
from tests.conftest import test_settings as settings_with
from tests.fakes import MemoryStore
from tests.helpers import start_due

pytestmark = pytest.mark.fakes

AT = T0 + 60  # every job's one slot


@pytest.fixture
def slow_store(clock: FakeClock, queue: MemoryQueue) -> Iterator[Container]:
    """The fakes, with a store that takes 20 claims' calls a second."""
    settings = settings_with(claim_rate=20.0)
    c = build_container(settings, store=MemoryStore(settings), queue=queue, clock=clock)
    c.worker.sleep = clock.advance
    yield c


def _submit_burst(c: Container, n: int, **kw: object) -> None:
    for i in range(n):
        body = {
            "name": f"b{i}",
            "operations": [{"_op": "noop"}],
            "schedule": {"at": "2027-01-15T08:01:00Z"},
        }
        c.jobs.as_(AS_OWNER).submit({**body, **kw}, start=True)


def test_the_lead_grows_with_the_burst_and_is_bounded() -> None:
    assert burst_lead(1, 400) == START_LEAD_S
    assert burst_lead(100, 100) == START_LEAD_S + 2
    assert burst_lead(10_000, 100) == MAX_LEAD_S
    assert burst_lead(5, 0) == MAX_LEAD_S  # no rate known: as early as allowed


def test_a_burst_is_sent_early_and_claimed_before_its_second(
    slow_store: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    c = slow_store
    _submit_burst(c, 40)  # 40 runs x 2 calls / 20 a second: 4 s more than usual
    clock.t = AT - 5
    c.supervisor.tick(AT - 5)
    sent = [m for m in queue.messages if m.kind == "start"]
    assert len(sent) == 2  # a burst's starts go in groups of 25 runs due on one second
    starts = [s for m in sent for s in start_messages(m.body)]
    assert len(starts) == 40 and {m.lead for m in starts} == {6.0}
    claimed = [c.worker.prepare_start(m.job_id, m.slot, None, None, m.delivery) for m in starts]
    held = [p.run for p in claimed if isinstance(p, PreparedStart)]
    assert len(held) == 40 and {r.status for r in held} == {ExStatus.running}
    assert {r.started_at for r in held} == {AT}  # claimed 5 s ahead, to start at its second


def test_a_message_without_a_lead_that_comes_that_early_is_sent_again(
    container: Container, queue: MemoryQueue, clock: FakeClock
) -> None:
    _submit_burst(container, 1)
    clock.t = AT - 5
    container.supervisor.tick(AT - 5)
    (start,) = [m for m in queue.messages if m.kind == "start"]
    assert "lead" not in start.body  # one run: the usual lead
    start.visible_at = AT - 5  # delivered as early as a burst's would be
    assert start_due(container, queue, clock, AT - 5) == ["early"]  # 5 s before its second
    (again,) = [m for m in queue.messages if m.kind == "start"]
    assert again.visible_at == AT - START_LEAD_S


def test_a_messages_lead_is_bounded_where_it_is_read() -> None:
    body = {"job_id": "j", "slot": "s"}
    assert StartMessage.from_body({**body, "lead": 1000}).lead == MAX_LEAD_S
    assert StartMessage.from_body({**body, "lead": -5}).lead == START_LEAD_S
    assert StartMessage.from_body({**body, "lead": "x"}).lead == START_LEAD_S
