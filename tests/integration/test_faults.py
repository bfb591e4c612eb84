"""Fault injection on moto: DynamoDB calls that fail before or after they were applied.

Two injection points, on purpose:

- `Faults` wraps PynamoDB's single dispatch point, `Connection.dispatch` (as counting.py
  does). It sits ABOVE botocore's retries, so a fault there is what the store sees once
  botocore has given up: deterministic, by operation name and occurrence, and able to
  call the real dispatch first and then raise ("applied, but the answer was lost").
  botocore event hooks would need registering on every client PynamoDB creates (one per
  Connection, lazily, per thread session), and a hook fault would be retried by botocore,
  so "the 2nd TransactWriteItems fails" would not mean what it says.
- `wire_throttle` wraps moto's `before-send` stubber, BELOW botocore's retries: it answers
  an HTTP 400 throttling error as DynamoDB would, so botocore's standard retry mode
  (PynamoDB's max_retry_attempts=5) sees it and retries. Used for scenario 7 only.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from chalice.test import Client
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse
from pynamodb.connection.base import Connection

from chalicelib.adapters.memory import MemoryQueue, Message
from chalicelib.bootstrap import Container
from chalicelib.domain.errors import StoreUnavailable
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Run
from chalicelib.domain.timefmt import iso
from chalicelib.domain.transitions import TERMINAL_EX, ExStatus, JobState, SliceState
from chalicelib.ports import FakeClock, Page
from tests.clients import ADMIN, OWNER, SignedClient
from tests.conftest import T0
from tests.helpers import deliver

URL = "https://dynamodb.us-east-1.amazonaws.com"


# ---- errors, as botocore raises them ------------------------------------------------------
def throttle(op: str, code: str = "ProvisionedThroughputExceededException") -> Exception:
    return ClientError({"Error": {"Code": code, "Message": "Rate exceeded"}}, op)


def read_timeout(op: str) -> Exception:
    return ReadTimeoutError(endpoint_url=URL)


def connect_timeout(op: str) -> Exception:
    return ConnectTimeoutError(endpoint_url=URL)


def connection_lost(op: str) -> Exception:
    return EndpointConnectionError(endpoint_url=URL)


# ---- the injector -----------------------------------------------------------------------
@dataclass
class Rule:
    op: str  # an operation name, or "*" for any
    nth: int  # the occurrence (1-based, counted from when the rule was armed) that fails
    every: bool  # and every later one
    after: bool  # apply the call, then raise (the answer is lost)
    error: Callable[[str], Exception]
    seen: int = 0
    fired: list[str] = field(default_factory=list)


class Faults:
    """Makes chosen DynamoDB calls fail; records every call and every fault."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []  # (op, "ok" | "failed-before" | "failed-after")
        self._lock = threading.Lock()

    def fail(
        self,
        op: str = "*",
        nth: int = 1,
        *,
        every: bool = False,
        after: bool = False,
        error: Callable[[str], Exception] = connection_lost,
    ) -> Rule:
        """The `nth` `op` from now on fails (and every later one with `every`)."""
        rule = Rule(op, nth, every, after, error)
        with self._lock:
            self.rules.append(rule)
        return rule

    def after_calls(self, n: int, **kw: Any) -> Rule:
        """Every call after the next `n` calls fails (the store becomes unreachable)."""
        return self.fail("*", n + 1, every=True, **kw)

    def down(self, **kw: Any) -> Rule:
        return self.fail("*", 1, every=True, error=kw.pop("error", connection_lost), **kw)

    def clear(self) -> None:
        with self._lock:
            self.rules = []

    @property
    def fired(self) -> list[str]:
        return [f for r in self.rules for f in r.fired]

    def _match(self, op: str) -> Rule | None:
        with self._lock:
            self.calls[op] += 1
            hit = None
            for r in self.rules:
                if r.op not in ("*", op):
                    continue
                r.seen += 1
                if hit is None and (r.seen == r.nth or (r.every and r.seen > r.nth)):
                    hit = r
            return hit

    def dispatch(self, real: Callable[..., Any], conn: Connection, op: str, kw: Any) -> Any:
        rule = self._match(op)
        if rule is None:
            self.log.append((op, "ok"))
            return real(conn, op, kw)
        if rule.after:
            real(conn, op, kw)
        outcome = "failed-after" if rule.after else "failed-before"
        rule.fired.append(f"{op}:{outcome}")
        self.log.append((op, outcome))
        raise rule.error(op)


@contextmanager
def inject() -> Iterator[Faults]:
    faults = Faults()
    original = Connection.dispatch

    def dispatch(self: Connection, operation_name: str, operation_kwargs: Any) -> Any:
        return faults.dispatch(original, self, operation_name, operation_kwargs)

    Connection.dispatch = dispatch  # type: ignore[method-assign]
    try:
        yield faults
    finally:
        Connection.dispatch = original  # type: ignore[method-assign]


@contextmanager
def wire_throttle(op: str, times: int, code: str = "ThrottlingException") -> Iterator[Counter[str]]:
    """The first `times` HTTP requests for `op` get a 400 throttling answer, below
    botocore's retry layer. Yields the HTTP attempts per operation."""
    attempts: Counter[str] = Counter()
    original = BotocoreStubber.__call__
    left = [times]

    def call(self: BotocoreStubber, event_name: str, request: Any, **kw: Any) -> Any:
        target = (request.headers.get("X-Amz-Target") or b"").decode()
        name = target.rsplit(".", 1)[-1] if target.startswith("DynamoDB_") else ""
        if name:
            attempts[name] += 1
        if name == op and left[0] > 0:
            left[0] -= 1
            body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}"})
            headers = {"x-amzn-requestid": "fault", "Content-Type": "application/x-amz-json-1.0"}
            return AWSResponse(request.url, 400, headers, MockRawResponse(body))  # type: ignore[arg-type]
        return original(self, event_name, request, **kw)

    BotocoreStubber.__call__ = call  # type: ignore[method-assign]
    try:
        yield attempts
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]


# ---- driving the system -----------------------------------------------------------------
def drain_keep_failed(c: Container, queue: MemoryQueue) -> list[Message]:
    """Deliver until empty; a message whose handler raised is kept, as SQS would keep it
    for redelivery after its visibility timeout."""
    failed: list[Message] = []
    n = 0
    while queue.messages:
        n += 1
        assert n < 2000, "messages keep coming"
        msg = queue.messages.pop(0)
        try:
            deliver(c, msg)
        except StoreUnavailable:
            failed.append(msg)
    return failed


def settle(
    c: Container, queue: MemoryQueue, clock: FakeClock, redeliver: list[Message] | None = None
) -> Counter[str]:
    """With the faults gone: redeliver what failed, drain, then tick past leases until
    every run is terminal and nothing is queued."""
    queue.messages.extend(redeliver or [])
    totals: Counter[str] = Counter()
    for _ in range(12):
        assert drain_keep_failed(c, queue) == []
        if not _open_runs(c) and not _due_jobs(c, clock.now() + 61):  # due by the next tick
            return totals
        clock.advance(61)
        stats = c.supervisor.tick(clock.now())
        totals.update({k: v for k, v in vars(stats).items() if isinstance(v, int)})
    raise AssertionError(f"runs still open: {_open_runs(c)}")


def _due_jobs(c: Container, now: float) -> list[str]:
    """Scheduled jobs with a slot due: a tick that failed left them for the next one."""
    jobs, _ = c.store.list_jobs(Page(100))
    return [
        j.job_id
        for j in jobs
        if j.state == JobState.SCHEDULED and j.next_fire_at is not None and j.next_fire_at <= now
    ]


def _open_runs(c: Container) -> list[tuple[str, str]]:
    jobs, _ = c.store.list_jobs(Page(100))
    return [
        (r.slot, str(r.status))
        for job in jobs
        for r in c.store.list_runs(job.job_id)
        if r.status not in TERMINAL_EX
    ]


def check(c: Container, job_id: str) -> list[Any]:
    """No run open, each slot once, each slice counted once, the job's slots freed."""
    runs = c.store.list_runs(job_id)
    assert len({r.slot for r in runs}) == len(runs) == len({r.ex_id for r in runs})
    for r in runs:
        assert r.status in TERMINAL_EX, (r.slot, r.status)
        if r.status in (ExStatus.completed, ExStatus.failed):
            assert r.processed + r.failed == r.slices_total, (r.processed, r.failed, r.slices_total)
            assert r.remaining == 0
            if not r.inline:
                states = Counter(s.state for s in c.store.list_slices(r.ex_id))
                assert states[SliceState.completed] == r.processed
                assert states[SliceState.error] == r.failed
                assert sum(states.values()) == r.slices_total
    job = c.store.get_job(job_id)
    assert job is not None and not job.active_slots
    return runs


def _job(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "f", "operations": [{"_op": "noop"}, {"_op": "noop"}]}
    body.update(kw)
    return body


SLICED = [{"_op": "range", "start": 0, "end": 5, "size": 1}, {"_op": "noop"}]
THREE = [{"_op": "range", "end": 3}, {"_op": "noop"}]
AT = "2027-01-15T08:01:00Z"  # T0 + 60


WHEN = pytest.mark.parametrize("after", [False, True], ids=["before", "after-applied"])
EVERY = pytest.mark.parametrize("every", [False, True], ids=["once", "until-cleared"])


# 1. the tick's run-creating transaction ---------------------------------------------------


@WHEN
@EVERY
def test_run_creating_transaction_fails(
    container: Container, queue: MemoryQueue, clock: FakeClock, after: bool, every: bool
) -> None:
    c = container
    job, _ = c.jobs.submit(_job(schedule={"at": AT}), start=True)
    clock.t = T0 + 57
    with inject() as faults:
        faults.fail("TransactWriteItems", 1, every=every, after=after)
        if every and not after:
            with pytest.raises(StoreUnavailable):
                c.supervisor.tick(clock.now())
        else:  # applied but unanswered, each time: the supervisor finds its own run
            stats = c.supervisor.tick(clock.now())
    assert faults.fired[0] == f"TransactWriteItems:{'failed-after' if after else 'failed-before'}"
    if not every or after:
        # the store's _transact retried the transaction at once
        # applied but unanswered: the retry hits its own write, and the supervisor, seeing
        # its own ex_id on the run, counts it as created and sends its start
        assert (stats.runs_created, stats.starts_sent) == (1, 1)
    sup = c.store.get_supervisor()
    assert sup is not None
    if every and not after:  # the tick raised: nothing recorded for it
        assert sup.ticks == 0
    settle(c, queue, clock)
    runs = check(c, job.job_id)
    assert [(r.slot, r.status) for r in runs] == [(AT, ExStatus.completed)]
    assert runs[0].attempts == 1


# 2. the store is down for a whole tick ----------------------------------------------------
@pytest.mark.parametrize("ok_calls", [0, 1, 3, 5])
def test_store_down_for_a_tick_then_catchup_latest(
    container: Container, queue: MemoryQueue, clock: FakeClock, ok_calls: int
) -> None:
    c = container
    job, _ = c.jobs.submit(_job(schedule={"rate": "rate(1 minute)"}), start=True)
    c.supervisor.tick(T0)  # the supervisor record exists
    clock.t = T0 + 57
    with inject() as faults:
        faults.after_calls(ok_calls, error=connection_lost)
        with pytest.raises(StoreUnavailable):
            c.supervisor.tick(clock.now())
    assert faults.fired
    sup = c.store.get_supervisor()
    assert sup is not None and sup.ticks == 1  # the failed tick is not recorded as a tick
    assert sup.failed_ticks == 0  # nor noted: the store was down for the note too
    assert c.store.list_runs(job.job_id) == []  # no partial damage
    clock.t = T0 + 200  # T0+60 and T0+120 are past the 60 s grace; T0+180 is on time
    stats = c.supervisor.tick(clock.now())
    assert (stats.runs_created, stats.slots_missed, stats.errors) == (1, 2, 0)
    sup = c.store.get_supervisor()
    assert sup is not None and sup.ticks == 2 and sup.last_stats is not None
    assert sup.last_stats["slots_missed"] == 2
    # the next tick of the same (warm) supervisor notes the failed one
    assert (sup.failed_ticks, sup.last_failure_at) == (1, T0 + 57)
    assert sup.last_failure and sup.last_failure.startswith("the state store could not be")
    assert drain_keep_failed(c, queue) == []
    runs = check(c, job.job_id)
    by_status = Counter(str(r.status) for r in runs)
    assert by_status == {"missed": 2, "completed": 1}
    assert {r.slot for r in runs if r.status == ExStatus.completed} == {"2027-01-15T08:03:00Z"}


def test_failed_tick_noted_at_once_when_the_record_can_be_written(
    container: Container, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    from app import app

    c = container
    c.jobs.submit(_job(schedule={"rate": "rate(1 minute)"}), start=True)
    c.supervisor.tick(T0)
    with inject() as faults:
        faults.fail("Query", every=True, error=read_timeout)  # reads time out, writes work
        with pytest.raises(StoreUnavailable):
            c.supervisor.tick(T0 + 30)
        with pytest.raises(StoreUnavailable):
            c.supervisor.tick(T0 + 31)  # a second failure adds to the count
    assert len(faults.fired) == 2
    with SignedClient(app, ADMIN) as client:
        state = client.http.get("/api/supervisor/state").json_body
    assert state["failed_ticks"] == 2 and state["last_failure_at"] == iso(T0 + 31)
    assert state["ticks"] == 1
    # a generic message and an id; the store's own message is in the log under that id
    failure_id = state["last_failure"].split("failure ")[1].split(",")[0]
    assert state["last_failure"] == (
        f"the state store could not be reached (failure {failure_id}, see the log)"
    )
    [logged] = [r.getMessage() for r in caplog.records if failure_id in r.getMessage()]
    assert "tick at" in logged and len(logged) > len(failure_id) + 40
    c.supervisor.tick(T0 + 32)  # nothing left to note: the count stays
    sup = c.store.get_supervisor()
    assert sup is not None and (sup.ticks, sup.failed_ticks) == (2, 2)


def _submitted(c: Container, queue: MemoryQueue, sliced: bool) -> tuple[Job, Run, Message]:
    """A job submitted with start=true (five slices if `sliced`), and its start message."""
    body = _job(operations=SLICED, workers=2) if sliced else _job()
    job, run = c.jobs.submit(body, start=True)
    assert run is not None
    [msg] = queue.take()
    return job, run, msg


def _start_event(client: Client, msg: Message) -> dict[str, Any]:
    """The SQS event that hands `msg` to the start worker."""
    event: dict[str, Any] = client.events.generate_sqs_event(
        message_bodies=[json.dumps(msg.body)], queue_name="cadenza-dev-start"
    )
    return event


# 3. a start worker's claim write, through the Chalice SQS handler ---------------------------
@WHEN
@pytest.mark.parametrize("sliced", [False, True], ids=["inline", "sliced"])
def test_start_claim_fails_message_reported_and_redelivered(
    container: Container, queue: MemoryQueue, clock: FakeClock, after: bool, sliced: bool
) -> None:
    from app import app

    c = container
    job, _, msg = _submitted(c, queue, sliced)
    with SignedClient(app, OWNER) as client:
        event = _start_event(client, msg)
        mid = event["Records"][0]["messageId"]
        with inject() as faults:
            faults.fail("UpdateItem", 1, after=after, error=connect_timeout)
            out = client.lambda_.invoke("start_worker", event).payload
        assert faults.fired == [f"UpdateItem:{'failed-after' if after else 'failed-before'}"]
        assert out == {"batchItemFailures": [{"itemIdentifier": mid}]}
        assert queue.messages == []
        out = client.lambda_.invoke("start_worker", event).payload  # the redelivery
        assert out == {"batchItemFailures": []}
    settle(c, queue, clock)
    [done] = check(c, job.job_id)
    assert done.status == ExStatus.completed
    assert done.processed == (5 if sliced else 1)


@pytest.mark.parametrize("sliced", [False, True], ids=["inline", "sliced"])
def test_start_claim_applied_but_unanswered_redelivery_goes_on_at_once(
    container: Container, queue: MemoryQueue, clock: FakeClock, sliced: bool
) -> None:
    """The redelivered message (same message id) recognises the claim as its own: the run
    finishes without waiting for its lease to expire (no tick, no clock move)."""
    from app import app

    c = container
    job, run, msg = _submitted(c, queue, sliced)
    with SignedClient(app, OWNER) as client:
        event = _start_event(client, msg)
        mid = event["Records"][0]["messageId"]
        with inject() as faults:
            faults.fail("UpdateItem", 1, after=True, error=connect_timeout)
            out = client.lambda_.invoke("start_worker", event).payload
        assert out == {"batchItemFailures": [{"itemIdentifier": mid}]}
        held = c.store.get_run(run.job_id, run.slot)
        assert held is not None and held.lease_token is not None
        assert held.lease_token.startswith(f"{mid}:") and held.lease_expires_at is not None
        assert held.lease_expires_at > clock.now()  # before: "busy" until this expired
        other = _start_event(client, msg)
        other["Records"][0]["messageId"] = f"other-{mid}"  # a second message for the slot
        assert client.lambda_.invoke("start_worker", other).payload == {"batchItemFailures": []}
        assert c.store.get_run(run.job_id, run.slot) == held  # another message: still busy
        out = client.lambda_.invoke("start_worker", event).payload  # the redelivery
        assert out == {"batchItemFailures": []}
    before = clock.now()
    assert drain_keep_failed(c, queue) == []
    [done] = check(c, job.job_id)
    assert clock.now() - before < 1 and done.status == ExStatus.completed
    assert (done.processed, done.attempts) == ((5, 0) if sliced else (1, 1))


# 4. the inline finish transaction, applied but its answer lost -----------------------------
@EVERY
def test_inline_finish_applied_but_answer_lost(
    container: Container, queue: MemoryQueue, clock: FakeClock, every: bool
) -> None:
    c = container
    job, run = c.jobs.submit(_job(), start=True)
    assert run is not None
    with inject() as faults:
        faults.fail("TransactWriteItems", 1, every=every, after=True)
        failed = drain_keep_failed(c, queue)
    assert faults.fired[0] == "TransactWriteItems:failed-after"
    # applied, unanswered: the store's retry meets its own write (condition fails) and the
    # worker takes the run as finished elsewhere; it is, once: nothing to redeliver
    stored = c.store.get_job(job.job_id)
    assert stored is not None and not stored.active_slots
    settle(c, queue, clock, failed)
    [done] = check(c, job.job_id)
    assert (done.status, done.processed, done.attempts) == (ExStatus.completed, 1, 1)
    again = c.jobs.start_run(job.job_id)  # the job's one active slot is free again
    assert again.status == ExStatus.pending


# 5. a slice worker's finish_slice transaction --------------------------------------------
@WHEN
@EVERY
def test_finish_slice_fails(
    container: Container, queue: MemoryQueue, clock: FakeClock, after: bool, every: bool
) -> None:
    c = container
    job, run = c.jobs.submit(_job(operations=SLICED, workers=1), start=True)
    assert run is not None
    deliver(c, queue.take()[0])  # the start: slice 0 is handed out
    with inject() as faults:
        faults.fail("TransactWriteItems", 1, every=every, after=after)
        failed = drain_keep_failed(c, queue)
    assert faults.fired
    settle(c, queue, clock, failed)
    [done] = check(c, job.job_id)
    assert (done.status, done.processed, done.failed) == (ExStatus.completed, 5, 0)


# 6. the after_slice cursor update ------------------------------------------------------
@WHEN
def test_cursor_update_fails_sweep_refills(
    container: Container, queue: MemoryQueue, clock: FakeClock, after: bool
) -> None:
    c = container
    job, run = c.jobs.submit(_job(operations=SLICED, workers=1), start=True)
    assert run is not None
    deliver(c, queue.take()[0])
    with inject() as faults:
        faults.fail("UpdateItem", 2, after=after)  # 1st: claim_slice, 2nd: the cursor
        failed = drain_keep_failed(c, queue)
    assert faults.fired == [f"UpdateItem:{'failed-after' if after else 'failed-before'}"]
    assert len(failed) == 1
    totals = settle(c, queue, clock, failed)
    [done] = check(c, job.job_id)
    assert (done.status, done.processed) == (ExStatus.completed, 5)
    if not after:  # nothing handed the next slice out but the sweep
        assert totals["resent"] >= 1


# 7. throttling absorbed by botocore's retries ---------------------------------------------
def test_throttling_is_absorbed_by_retries(
    container: Container, queue: MemoryQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.retries import standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0)
    c = container
    job, run = c.jobs.submit(_job(operations=SLICED, workers=2), start=True)
    assert run is not None
    with (
        inject() as faults,
        wire_throttle("TransactWriteItems", 3) as wire,
        wire_throttle("UpdateItem", 2, "ProvisionedThroughputExceededException") as wire2,
    ):
        assert drain_keep_failed(c, queue) == []
    retries = {
        "TransactWriteItems": wire["TransactWriteItems"] - faults.calls["TransactWriteItems"],
        "UpdateItem": wire2["UpdateItem"] - faults.calls["UpdateItem"],
    }
    assert retries == {"TransactWriteItems": 3, "UpdateItem": 2}
    [done] = check(c, job.job_id)
    assert (done.status, done.processed, done.failed) == (ExStatus.completed, 5, 0)
    assert all(s.attempts == 1 for s in c.store.list_slices(run.ex_id))


# 8. the store unreachable during finalize --------------------------------------------------
@WHEN
def test_store_unreachable_during_finalize(
    container: Container, queue: MemoryQueue, clock: FakeClock, after: bool
) -> None:
    c = container
    job, run = c.jobs.submit(_job(operations=THREE, workers=1), start=True)
    assert run is not None
    deliver(c, queue.take()[0])
    deliver(c, queue.take()[0])
    deliver(c, queue.take()[0])
    [last] = queue.take()
    with inject() as faults:
        # finish_slice is the 1st transaction, finalize the 2nd; from there, all is down
        faults.fail("TransactWriteItems", 2, every=True, after=after, error=connection_lost)
        faults.fail("GetItem", 3, every=True, error=connection_lost)
        if after:  # applied, unanswered: the retry meets its own write and takes it as done
            assert deliver(c, last) == "completed"
        else:
            with pytest.raises(StoreUnavailable):
                deliver(c, last)
        with pytest.raises(StoreUnavailable):
            c.supervisor.tick(clock.now() + 61)
    mid = c.store.get_run(job.job_id, run.slot)
    assert mid is not None
    assert mid.status == (ExStatus.completed if after else ExStatus.running)
    totals = settle(c, queue, clock, [last])
    [done] = check(c, job.job_id)
    assert (done.status, done.processed) == (ExStatus.completed, 3)
    assert totals["finalized"] == (0 if after else 1)


# a ReadTimeoutError (the usual "applied, answer lost") ---------------------------------------
@pytest.mark.parametrize("op", ["TransactWriteItems", "UpdateItem"])
def test_read_timeout_is_store_unavailable(
    container: Container, queue: MemoryQueue, op: str
) -> None:
    c = container
    _, run = c.jobs.submit(_job(), start=True)
    assert run is not None
    with inject() as faults:
        faults.fail(op, 1, every=True, error=read_timeout)
        with pytest.raises(StoreUnavailable):
            deliver(c, queue.take()[0])
