"""Helpers the test modules share: racing threads, delivering queued messages, and reading
the HTTP API's answers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from chalice.test import Client

from chalicelib.adapters.memory import MemoryQueue, Message
from chalicelib.bootstrap import Container
from chalicelib.domain.outcomes import StartOutcome
from chalicelib.ports import FakeClock, SliceMessage, start_messages
from chalicelib.services.entry import PreparedStart


def race(*fns: Callable[[], Any]) -> list[Any]:
    """Run the functions in threads released at the same instant; return their results."""
    barrier = threading.Barrier(len(fns))
    results: list[Any] = [None] * len(fns)
    errors: list[BaseException] = []

    def run(i: int, fn: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = fn()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def get_ok(client: Client, path: str) -> Any:
    """The JSON body of a GET that must answer 200."""
    r = client.http.get(path)
    assert r.status_code == 200, r.json_body
    return r.json_body


def field_error(client: Client, path: str) -> list[str]:
    """The fields a GET that must answer 400 names in its `errors`."""
    r = client.http.get(path)
    assert r.status_code == 400, r.json_body
    assert set(r.json_body) >= {"error", "message", "errors"}
    return [e["field"] for e in r.json_body["errors"]]


def deliver(c: Container, msg: Message) -> str:
    """Hand one queued message to the worker, as the SQS trigger would (a burst's group:
    each of its runs, one after another; their outcomes joined by commas)."""
    if msg.kind == "start":
        return ",".join(deliver_starts(c, msg))
    sl = SliceMessage.from_body(msg.body)
    return c.worker.handle_slice(sl.job_id, sl.slot, sl.ex_id, sl.slice_id)


def deliver_starts(c: Container, msg: Message) -> list[str]:
    """Hand a queued start message (or a burst's group of them) to the worker: an outcome
    per run."""
    starts = start_messages(msg.body)
    handed_over = starts[0].claim_token is not None
    if len(starts) == 1 and not handed_over:
        (start,) = starts
        return [
            c.worker.handle_start(
                start.job_id, start.slot, hint=start.hint, delivery=start.delivery
            )
        ]
    outs = c.worker.resume_claimed(starts) if handed_over else c.worker.prepare_group(starts)
    ready = [out for out in outs if isinstance(out, PreparedStart)]
    kept = {id(p) for p in (ready if handed_over else c.worker.hand_off(ready))}
    outcomes: list[str] = []
    for out in outs:
        if isinstance(out, Exception):
            raise out
        if not isinstance(out, PreparedStart):
            outcomes.append(out)
        elif id(out) in kept:
            outcomes.append(c.worker.run_prepared(out))
        else:
            outcomes.append(StartOutcome.handed_off)
    return outcomes


def start_due(c: Container, queue: MemoryQueue, clock: FakeClock, t: float) -> list[str]:
    """At time `t`, deliver the start messages due by then (slice messages stay queued, so
    a sliced run that started keeps running: a run that really runs, for overlap tests)."""
    clock.t = t
    outcomes: list[str] = []
    for msg in [m for m in queue.messages if m.kind == "start" and m.visible_at <= t]:
        queue.messages.remove(msg)
        outcomes += deliver_starts(c, msg)
    return outcomes


def deliver_next(c: Container, queue: MemoryQueue, clock: FakeClock) -> str:
    """Deliver the next message once it is due, moving the fake clock on to it (one step
    of a run whose messages keep coming, as a waiting slice's checks do)."""
    msg = min(queue.messages, key=lambda m: m.visible_at)
    clock.t = max(clock.t, msg.visible_at)
    queue.messages.remove(msg)
    return deliver(c, msg)


def pypi_reachable() -> bool:
    """Whether PyPI answers (`chalice package` pip-downloads Linux wheels from it)."""
    import urllib.request

    try:
        with urllib.request.urlopen("https://pypi.org/simple/pynamodb/", timeout=15) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False
