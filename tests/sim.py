"""A deterministic, virtual-time simulation of the whole engine on the in-memory fakes.

The supervisor ticking every `tick_s`, the start and slice queues' pollers (as the Lambda
event source mappings: up to `workers` batches at once, `batch_size` messages each, a
batching window), the start worker's two phases (claims, then each run at its own
second, side by side) and a `work` op that takes `seconds` of virtual time, all run on
a MemoryStore and two MemoryQueues over one virtual clock. Each actor is a real thread,
but only one runs at a time: an actor runs until it sleeps (`Simulation.sleep`) or
waits for a message, and the conductor then wakes the actor due first (by time, then
by the order it went to sleep), moving the clock on. A run that takes `d` seconds
therefore overlaps the next slot's start, the next ticks and the sweep, and a
5-minute scenario runs in a fraction of a second.

Faults: the supervisor down between two times (no ticks), and the start queue's
messages lost at a time (the local stack's in-memory queue dying with it).

Usage::

    with Simulation(SimConfig(tick_s=1, lookahead_s=30)) as sim:
        job_id = sim.submit(every(10, work_s=0.5, overlap="skip"))
        result = sim.run(75)
    for rec in result.records(job_id):
        print(rec)                      # slot, status, reason, started_at, finished_at
    print(result.table(job_id))         # the same, in seconds from the start

Or from the shell, the issue's experiment (one job, its slots and their statuses)::

    .venv/bin/python -m tests.sim --lookahead 30 --interval 10 --until 75

Times in a SimConfig and given to `run` are seconds from the simulation's start (`T0`,
a whole minute); the records' times are epoch seconds (`result.rel` turns them back).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from pydantic import Field

from chalicelib.adapters.memory import MemoryNotifier, MemoryQueue, Message
from chalicelib.bootstrap import Container, build_container
from chalicelib.config import Settings
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import ExStatus
from chalicelib.ops.registry import REGISTRY, OpSpec, Params, SliceContext
from chalicelib.ports import (
    Clock,
    Queue,
    SliceMessage,
    StartGroup,
    StartMessage,
    start_messages,
)
from chalicelib.services.entry import PreparedStart
from chalicelib.services.supervisor import TickStats
from tests.fakes import MemoryAssetStore, MemoryBlobStore, MemoryStore

log = logging.getLogger(__name__)

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a whole minute
WORK_OP = "work"
WALL_TIMEOUT_S = 60.0  # an actor that runs this long without yielding is stuck


# ---- virtual time -------------------------------------------------------------------------
class VirtualClock(Clock):
    """The simulation's time: moved on only by the conductor."""

    def __init__(self, start: float) -> None:
        self.t = start

    def now(self) -> float:
        return self.t


class _Stop(BaseException):
    """Unwinds an actor's thread when the simulation closes (not an Exception: the engine's
    `except Exception` must not catch it)."""


@dataclass(eq=False)
class Actor:
    """One thread of the simulation: a poller, a run, the supervisor..."""

    name: str
    go: threading.Event = field(default_factory=threading.Event)
    token: int = 0
    wake_at: float | None = None
    parked: bool = False
    done: bool = False
    joiners: list[Actor] = field(default_factory=list)
    thread: threading.Thread | None = None


class Scheduler:
    """Runs actors one at a time in virtual time: `sleep`, `park` (until a time or a
    `poke`) and `join` hand the baton back to the conductor (`run_until`), which wakes the
    actor due first and moves the clock to its time."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, int, Actor]] = []
        self._seq = itertools.count()
        self._back = threading.Event()
        self._local = threading.local()
        self._actors: list[Actor] = []
        self._stopping = False
        self.failure: BaseException | None = None

    # -- from anywhere ------------------------------------------------------------------------
    def spawn(self, name: str, fn: Callable[[], None], at: float | None = None) -> Actor:
        """A new actor running `fn`, first woken at `at` (default: now)."""
        actor = Actor(name)
        actor.thread = threading.Thread(target=self._main, args=(actor, fn), name=name, daemon=True)
        self._actors.append(actor)
        actor.thread.start()
        self._wake(actor, self.clock.t if at is None else at)
        return actor

    def poke(self, actor: Actor, at: float) -> None:
        """Wake a parked actor at `at` (or now, if that is past) unless it wakes sooner."""
        if actor.done or not actor.parked:
            return
        at = max(at, self.clock.t)
        if actor.wake_at is None or at < actor.wake_at:
            self._wake(actor, at)

    # -- from an actor ------------------------------------------------------------------------
    def current(self) -> Actor:
        actor: Actor | None = getattr(self._local, "actor", None)
        if actor is None:
            raise RuntimeError("not called from a simulation actor")
        return actor

    def sleep(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass for the calling actor (others run meanwhile)."""
        me = self.current()
        self._wake(me, self.clock.t + max(0.0, seconds))
        self._yield(me)

    def park(self, until: float | None) -> None:
        """Wait until `until` (None: forever) or until poked."""
        me = self.current()
        if until is None:
            me.token += 1
            me.wake_at = None
        else:
            self._wake(me, max(until, self.clock.t))
        me.parked = True
        try:
            self._yield(me)
        finally:
            me.parked = False

    def join(self, actors: Sequence[Actor]) -> None:
        """Wait until every one of `actors` has finished."""
        me = self.current()
        for actor in actors:
            actor.joiners.append(me)
        while not all(a.done for a in actors):
            self.park(None)

    # -- the conductor -------------------------------------------------------------------------
    def run_until(self, t_end: float) -> None:
        """Wake actors in time order until none is due by `t_end`; the clock ends at it."""
        while self._heap and self._heap[0][0] <= t_end:
            at, _, token, actor = heapq.heappop(self._heap)
            if token != actor.token or actor.done:
                continue
            self.clock.t = max(self.clock.t, at)
            actor.wake_at = None
            self._back.clear()
            actor.go.set()
            if not self._back.wait(WALL_TIMEOUT_S):
                raise RuntimeError(f"{actor.name} neither slept nor ended (a real lock or wait?)")
            if self.failure is not None:
                raise RuntimeError(f"simulation actor failed: {self.failure!r}") from self.failure
        self.clock.t = max(self.clock.t, t_end)

    def close(self) -> None:
        """Unwind every actor still alive."""
        self._stopping = True
        for actor in self._actors:
            if actor.done or actor.thread is None:
                continue
            self._back.clear()
            actor.go.set()
            self._back.wait(5)
            actor.thread.join(5)

    # -- internals -----------------------------------------------------------------------------
    def _wake(self, actor: Actor, at: float) -> None:
        actor.token += 1
        actor.wake_at = at
        heapq.heappush(self._heap, (at, next(self._seq), actor.token, actor))

    def _yield(self, me: Actor) -> None:
        self._back.set()
        me.go.wait()
        me.go.clear()
        if self._stopping:
            raise _Stop

    def _main(self, actor: Actor, fn: Callable[[], None]) -> None:
        self._local.actor = actor
        actor.go.wait()
        actor.go.clear()
        try:
            if not self._stopping:
                fn()
        except _Stop:
            pass
        except BaseException as exc:  # a bug of the simulation or of a test: stop the run
            self.failure = exc
        finally:
            actor.done = True
            for joiner in actor.joiners:
                self.poke(joiner, self.clock.t)
            self._back.set()


# ---- the queue ------------------------------------------------------------------------------
class SimQueue(Queue):
    """Two MemoryQueues on the virtual clock (SQS's delays and visibility timeout), one
    per kind; sending wakes the queue's idle pollers at the message's delivery time."""

    def __init__(self, clock: Clock, on_put: Callable[[MemoryQueue], None]) -> None:
        self.starts = MemoryQueue(clock=clock)
        self.slices = MemoryQueue(clock=clock)
        self._on_put = on_put

    def send_starts(self, messages: Sequence[StartMessage | StartGroup]) -> None:
        self.starts.send_starts(messages)
        self._on_put(self.starts)

    def send_slices(self, messages: Sequence[SliceMessage]) -> None:
        self.slices.send_slices(messages)
        self._on_put(self.slices)


# ---- the scenario -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SimConfig:
    """What the simulated deployment looks like, and the faults to inject. Times are
    seconds from the simulation's start."""

    tick_s: float = 1.0  # `cadenza dev` ticks every 1-2 s, EventBridge every 60 s
    lookahead_s: float = 5.0  # Settings.lookahead_seconds (5 locally, 60 on AWS)
    workers: int = 10  # batches handled at once per queue (Lambda concurrency)
    batch_size: int = 10
    start_window_s: float = 1.0  # the start worker's batching window (app.py)
    slice_window_s: float = 0.0
    first_tick_s: float = 0.0
    supervisor_down: Sequence[tuple[float, float]] = ()  # no tick in [t1, t2)
    lose_starts_at: Sequence[float] = ()  # the start queue's messages are lost then
    settings: Settings | None = None  # the rest of the settings (lookahead_s overrides)


class WorkParams(Params):
    seconds: float = Field(default=0.0, ge=0, le=86_400)


def every(interval_s: int, work_s: float = 0.0, **definition: Any) -> dict[str, Any]:
    """A job definition: every `interval_s` seconds, one slice of `work_s` seconds."""
    body: dict[str, Any] = {
        "name": f"every-{interval_s}s",
        "operations": [{"_op": "noop"}, {"_op": WORK_OP, "seconds": work_s}],
        "schedule": {"interval_seconds": interval_s},
    }
    body.update(definition)
    return body


@dataclass(frozen=True)
class RunRecord:
    """One run (or ledger record) of a job, as the store holds it at the end."""

    slot: float
    status: str
    reason: str | None
    started_at: float | None
    finished_at: float | None
    trigger: str
    created: float
    ex_id: str
    attempts: int

    @property
    def ran(self) -> bool:
        return self.started_at is not None and self.status not in ("skipped", "missed")

    def running_at(self, t: float) -> bool:
        """Whether this run was under way at `t` (started by then, not yet finished)."""
        if not self.ran or self.started_at is None or self.started_at > t:
            return False
        return self.finished_at is None or self.finished_at > t


@dataclass
class SimResult:
    """What a simulation left: every run of every job, the ticks, what went wrong."""

    t0: float
    end: float
    runs: dict[str, list[RunRecord]]
    ticks: list[tuple[float, TickStats]]
    log: list[str]
    errors: list[str]
    lost_starts: int
    work_calls: dict[str, int]  # how often each run's work op ran, by ex_id

    def records(self, job_id: str) -> list[RunRecord]:
        """The job's runs and ledger records, in slot order."""
        return self.runs.get(job_id, [])

    def by_slot(self, job_id: str) -> dict[float, list[RunRecord]]:
        out: dict[float, list[RunRecord]] = {}
        for rec in self.records(job_id):
            out.setdefault(rec.slot, []).append(rec)
        return out

    def running_at(self, job_id: str, t: float) -> list[RunRecord]:
        """The job's runs under way at `t`."""
        return [r for r in self.records(job_id) if r.running_at(t)]

    def rel(self, t: float | None) -> float | None:
        """An epoch time as seconds from the simulation's start."""
        return None if t is None else round(t - self.t0, 3)

    def table(self, job_id: str) -> str:
        """The job's records, one a line, times in seconds from the start."""
        lines = [f"{'slot':>8} {'status':<10} {'reason':<16} {'started':>8} {'finished':>8}"]
        for r in self.records(job_id):
            lines.append(
                f"{self.rel(r.slot)!s:>8} {r.status:<10} {r.reason or '':<16} "
                f"{self.rel(r.started_at)!s:>8} {self.rel(r.finished_at)!s:>8}"
            )
        return "\n".join(lines)


# ---- the simulation -------------------------------------------------------------------------
class Simulation:
    """The engine on the fakes, driven in virtual time. Use as a context manager: it
    registers the `work` op while open and unwinds its threads when closed."""

    def __init__(self, config: SimConfig | None = None, start: float = T0) -> None:
        self.config = config or SimConfig()
        self.t0 = start
        self.clock = VirtualClock(start)
        self.sched = Scheduler(self.clock)
        self.queue = SimQueue(self.clock, self._wake_pollers)
        base = self.config.settings or Settings(region="us-east-1").with_prefix("sim")
        # one firing thread: the firer's pool threads would be no actors
        settings = replace(base, lookahead_seconds=self.config.lookahead_s, fire_concurrency=1)
        self.container: Container = build_container(
            settings,
            store=MemoryStore(settings),
            queue=self.queue,
            clock=self.clock,
            notifier=MemoryNotifier(),
            asset_store=MemoryAssetStore(),
            files=MemoryBlobStore(),
        )
        self.container.worker.sleep = self.sleep
        self.jobs: list[str] = []
        self.ticks: list[tuple[float, TickStats]] = []
        self.log: list[str] = []
        self.errors: list[str] = []
        self.lost_starts = 0
        self.work_calls: dict[str, int] = {}
        self._idle: dict[int, list[Actor]] = {id(self.queue.starts): [], id(self.queue.slices): []}
        self._msg_ids: dict[int, str] = {}
        self._started = False
        self._saved_op: OpSpec | None = None

    # -- set-up --------------------------------------------------------------------------------
    def __enter__(self) -> Simulation:
        self._saved_op = REGISTRY.get(WORK_OP)
        REGISTRY[WORK_OP] = OpSpec(WORK_OP, WorkParams, processor=self._work)
        return self

    def __exit__(self, *exc: object) -> None:
        self.sched.close()
        if self._saved_op is None:
            REGISTRY.pop(WORK_OP, None)
        else:
            REGISTRY[WORK_OP] = self._saved_op

    def submit(self, definition: dict[str, Any]) -> str:
        """Submit a job, scheduled from now on; returns its id."""
        job, _ = self.container.jobs.submit(definition, start=True)
        self.jobs.append(job.job_id)
        return job.job_id

    def at(self, t: float, what: str, fn: Callable[[], None]) -> None:
        """Do `fn` (any engine call: a submit, a control) at `t` seconds from the start."""
        self.sched.spawn(what, fn, at=self.t0 + t)

    def sleep(self, seconds: float) -> None:
        """The engine's sleep (WorkerService.sleep) and the work op's: virtual time."""
        self.sched.sleep(seconds)

    # -- running -------------------------------------------------------------------------------
    def run(self, until: float) -> SimResult:
        """Run until `until` seconds from the start; may be called again to go on."""
        if not self._started:
            self._start_actors()
        self.sched.run_until(self.t0 + until)
        return self.result()

    def result(self) -> SimResult:
        runs: dict[str, list[RunRecord]] = {}
        for job_id in self.jobs:
            stored = self.container.store.list_runs(job_id, limit=100_000, newest_first=False)
            runs[job_id] = sorted((_record(r) for r in stored), key=lambda r: r.slot)
        return SimResult(
            t0=self.t0,
            end=self.clock.now(),
            runs=runs,
            ticks=list(self.ticks),
            log=list(self.log),
            errors=list(self.errors),
            lost_starts=self.lost_starts,
            work_calls=dict(self.work_calls),
        )

    def _start_actors(self) -> None:
        self._started = True
        c = self.config
        self.sched.spawn("supervisor", self._supervise, at=self.t0 + c.first_tick_s)
        for i in range(c.workers):
            self.sched.spawn(
                f"start-poller-{i}",
                lambda: self._poll(self.queue.starts, self._start_batch, c.start_window_s),
            )
            self.sched.spawn(
                f"slice-poller-{i}",
                lambda: self._poll(self.queue.slices, self._slice_batch, c.slice_window_s),
            )
        for t in c.lose_starts_at:
            self.sched.spawn(f"lose-starts@{t}", self._lose_starts, at=self.t0 + t)

    def _note(self, text: str) -> None:
        self.log.append(f"{self.clock.now() - self.t0:9.3f} {text}")

    # -- the supervisor ------------------------------------------------------------------------
    def _down(self, t: float) -> bool:
        rel = t - self.t0
        return any(a <= rel < b for a, b in self.config.supervisor_down)

    def _supervise(self) -> None:
        first = self.clock.now()
        for k in itertools.count(1):
            now = self.clock.now()
            if not self._down(now):
                try:
                    stats = self.container.supervisor.tick()
                except Exception as exc:
                    self.errors.append(f"tick at {now - self.t0}: {exc!r}")
                else:
                    self.ticks.append((now, stats))
            self.sched.sleep(first + k * self.config.tick_s - self.clock.now())

    def _lose_starts(self) -> None:
        lost = self.queue.starts.take()
        self.lost_starts += len(lost)
        self._note(f"lost {len(lost)} start messages")

    # -- the pollers (event source mappings) ---------------------------------------------------
    def _wake_pollers(self, queue: MemoryQueue) -> None:
        at = queue.next_visible_at()
        if at is None:
            return
        for actor in self._idle[id(queue)]:
            self.sched.poke(actor, at)

    def _wait_for(self, queue: MemoryQueue, deadline: float | None) -> None:
        """Park until the queue's next message is deliverable, one is sent, or `deadline`."""
        due = [t for t in (queue.next_visible_at(), deadline) if t is not None]
        until = max(min(due), self.clock.now() + 1e-6) if due else None
        idle = self._idle[id(queue)]
        me = self.sched.current()
        idle.append(me)
        try:
            self.sched.park(until)
        finally:
            idle.remove(me)

    def _poll(
        self, queue: MemoryQueue, handle: Callable[[list[Message]], None], window: float
    ) -> None:
        size = self.config.batch_size
        while True:
            batch = queue.receive(size)
            if not batch:
                self._wait_for(queue, None)
                continue
            deadline = self.clock.now() + window
            while len(batch) < size and self.clock.now() < deadline:
                self._wait_for(queue, deadline)
                batch += queue.receive(size - len(batch))
            handle(batch)

    def _msg_id(self, msg: Message) -> str:
        return self._msg_ids.setdefault(id(msg), f"msg-{len(self._msg_ids)}")

    def _start_batch(self, batch: list[Message]) -> None:
        """handlers.on_start_batch: every claim first (each run of a burst's group), then
        each run at its second, side by side; a message whose handling raised stays, to be
        received again, and one is deleted when all its runs are done."""
        prepared: list[tuple[Message, PreparedStart]] = []
        left: dict[int, int] = {}
        for msg in batch:
            outs = self._prepare_all(msg, start_messages(msg.body))
            ready = [out for out in outs if isinstance(out, PreparedStart)]
            if len(outs) > 1:  # a group's claims held beyond MAX_WAIT_S are handed off
                ready = self.container.worker.hand_off(ready)
            prepared += [(msg, out) for out in ready]
            left[id(msg)] = len(ready) if all(out is not None for out in outs) else -1
            if left[id(msg)] == 0:
                self.queue.starts.delete(msg)

        def run(msg: Message, p: PreparedStart) -> None:
            if self._run_prepared(msg, p) and left[id(msg)] > 0:
                left[id(msg)] -= 1
                if left[id(msg)] == 0:
                    self.queue.starts.delete(msg)

        children = [
            self.sched.spawn(f"run-{p.run.slot}", partial(run, msg, p)) for msg, p in prepared
        ]
        self.sched.join(children)

    def _prepare_all(self, msg: Message, starts: list[StartMessage]) -> list[Any]:
        """What each start of a message came to (None where it raised)."""
        if starts and starts[0].claim_token is not None:
            handed = self._guarded(msg, partial(self.container.worker.resume_claimed, starts))
            if handed is None:
                return [None]
            return [None if isinstance(out, Exception) else out for out in handed]
        if len(starts) == 1:
            return [self._guarded(msg, partial(self._prepare, msg, starts[0]))]
        outs = self._guarded(
            msg, partial(self.container.worker.prepare_group, starts, self._msg_id(msg))
        )
        if outs is None:
            return [None]
        return [None if isinstance(out, Exception) else out for out in outs]

    def _prepare(self, msg: Message, start: StartMessage) -> PreparedStart | str:
        out = self.container.worker.prepare_start(
            start.job_id, start.slot, self._msg_id(msg), start.hint, start.delivery
        )
        if not isinstance(out, PreparedStart):
            self._note(f"start {start.job_id[:8]} {start.slot}: {out}")
        return out

    def _run_prepared(self, msg: Message, prepared: PreparedStart) -> bool:
        out = self._guarded(msg, lambda: self.container.worker.run_prepared(prepared))
        if out is not None:
            self._note(f"run {prepared.run.job_id[:8]} {prepared.run.slot}: {out}")
        return out is not None

    def _slice_batch(self, batch: list[Message]) -> None:
        for msg in batch:
            sl = SliceMessage.from_body(msg.body)
            handle = partial(
                self.container.worker.handle_slice, sl.job_id, sl.slot, sl.ex_id, sl.slice_id
            )
            out = self._guarded(msg, handle)
            if out is not None:
                self.queue.slices.delete(msg)

    def _guarded(self, msg: Message, fn: Callable[[], Any]) -> Any:
        """fn's result, or None (noted in `errors`) if it raised."""
        try:
            return fn()
        except Exception as exc:
            self.errors.append(f"{self.clock.now() - self.t0:.3f} {msg.kind} {msg.body}: {exc!r}")
            log.exception("simulated handler failed")
            return None

    # -- the work op ---------------------------------------------------------------------------
    def _work(self, p: Any, data: Any, ctx: SliceContext) -> Any:
        self.work_calls[ctx.ex_id] = self.work_calls.get(ctx.ex_id, 0) + 1
        self.sched.sleep(float(p.seconds))
        return data


def _record(run: Run) -> RunRecord:
    status = run.status.value if isinstance(run.status, ExStatus) else str(run.status)
    return RunRecord(
        slot=run.scheduled_start,
        status=status,
        reason=run.reason,
        started_at=run.started_at,
        finished_at=run.finished_at,
        trigger=str(run.trigger),
        created=run.created,
        ex_id=run.ex_id,
        attempts=run.attempts,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """One job on the simulated engine; prints its slots and their statuses."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m tests.sim", description=main.__doc__)
    ap.add_argument("--lookahead", type=float, default=5.0)
    ap.add_argument("--tick", type=float, default=1.0)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--work", type=float, default=0.0, help="seconds each run takes")
    ap.add_argument("--until", type=float, default=75.0)
    ap.add_argument("--job", default="{}", help="more of the job definition, as JSON")
    ap.add_argument("--down", type=float, nargs=2, action="append", default=[], metavar="T")
    ap.add_argument("--lose-starts-at", type=float, action="append", default=[], metavar="T")
    args = ap.parse_args(argv)
    config = SimConfig(
        tick_s=args.tick,
        lookahead_s=args.lookahead,
        supervisor_down=[(a, b) for a, b in args.down],
        lose_starts_at=args.lose_starts_at,
    )
    with Simulation(config) as sim:
        job_id = sim.submit(every(args.interval, args.work, **json.loads(args.job)))
        result = sim.run(args.until)
    print(result.table(job_id))
    counts: dict[str, int] = {}
    for rec in result.records(job_id):
        if rec.slot <= result.end:
            counts[rec.status] = counts.get(rec.status, 0) + 1
    print("slots due by the end:", counts, "errors:", len(result.errors))


if __name__ == "__main__":
    main()
