"""An in-memory Queue for tests: keeps every nudge and delivers it the way SQS would.

A message is deliverable once its delay has passed on the queue's clock (SQS's
DelaySeconds); a received message is invisible for the visibility timeout and comes back
unless it is deleted (a handler that raised); with `max_receives` a message received more
often goes to `dead` (the redrive policy). Without a clock, delays cannot be measured and
every message is deliverable at once.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib.domain.slices import MAX_SQS_DELAY
from chalicelib.ports import Alert, Clock, FakeClock, Notifier, Queue, SliceMessage, StartMessage

VISIBILITY_TIMEOUT = 120.0  # the queues' VisibilityTimeout (adapters.sqs.ensure_queues)


@dataclass(eq=False)
class Message:
    kind: str
    body: dict[str, Any]
    delay: int
    visible_at: float = 0.0
    receives: int = 0


@dataclass
class MemoryQueue(Queue):
    """Keeps every message sent (`sent`) and those not yet deleted (`messages`, in the
    order sent). `receive` and `delete` are SQS's; `drain` hands messages to a handler
    until none is left, moving a fake clock on to the next message's delay."""

    messages: list[Message] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)
    clock: Clock | None = None
    visibility_timeout: float = VISIBILITY_TIMEOUT
    max_receives: int | None = None
    dead: list[Message] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def send_starts(self, messages: Sequence[StartMessage]) -> None:
        for msg in messages:
            self._put(Message("start", msg.body(), msg.delay))

    def send_slices(self, messages: Sequence[SliceMessage]) -> None:
        for msg in messages:
            self._put(Message("slice", msg.body(), msg.delay))

    def _now(self) -> float:
        return self.clock.now() if self.clock is not None else math.inf

    def _put(self, msg: Message) -> None:
        with self._lock:
            if self.clock is not None:
                msg.visible_at = self.clock.now() + max(0, min(MAX_SQS_DELAY, int(msg.delay)))
            self.messages.append(msg)
            self.sent.append(msg)

    def take(self) -> list[Message]:
        """Every message not yet deleted, deleted now, whatever its delay (a test that
        delivers them itself)."""
        with self._lock:
            out, self.messages = self.messages, []
            return out

    def receive(self, max_messages: int = 10) -> list[Message]:
        """Up to `max_messages` deliverable messages, in the order sent; each is invisible
        for the visibility timeout from now on, unless deleted meanwhile."""
        with self._lock:
            now = self._now()
            out: list[Message] = []
            for msg in [m for m in self.messages if m.visible_at <= now]:
                if len(out) == max_messages:
                    break
                msg.receives += 1
                if self.max_receives is not None and msg.receives > self.max_receives:
                    self.messages.remove(msg)
                    self.dead.append(msg)
                    continue
                msg.visible_at = now + self.visibility_timeout
                out.append(msg)
            return out

    def delete(self, msg: Message) -> None:
        """Delete a received message (its handler succeeded)."""
        with self._lock:
            if msg in self.messages:
                self.messages.remove(msg)

    def next_visible_at(self) -> float | None:
        """When the next message becomes deliverable, or None if there is none."""
        with self._lock:
            return min((m.visible_at for m in self.messages), default=None)

    def _wait(self) -> None:
        """Move the fake clock to the next message's time (no message is deliverable)."""
        at = self.next_visible_at()
        if at is None:
            return
        if not isinstance(self.clock, FakeClock):
            raise RuntimeError(f"no message deliverable before {at}, and the clock is not fake")
        self.clock.advance(max(0.0, at - self.clock.now()))

    def drain(self, handle: Callable[[Message], Any], limit: int = 5_000) -> int:
        """Deliver messages one at a time (including ones sent while draining), each once it
        is deliverable, moving a fake clock on when none is yet, until none is left. A
        message whose handler raises stays (invisible for the visibility timeout) and the
        error propagates. Raises if more than `limit` are delivered: a message that keeps
        re-sending itself is a test bug."""
        n = 0
        while self.messages:
            got = self.receive(1)
            if not got:
                self._wait()
                continue
            if n >= limit:
                raise RuntimeError(f"still {len(self.messages)} messages after {limit}")
            handle(got[0])
            self.delete(got[0])
            n += 1
        return n


@dataclass
class MemoryNotifier(Notifier):
    """Keeps every published alert."""

    published: list[Alert] = field(default_factory=list)

    def publish(self, alert: Alert) -> None:
        self.published.append(alert)
