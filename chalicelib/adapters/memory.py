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
from dataclasses import dataclass, field, replace
from typing import Any

from chalicelib.domain.notifications import CLAIM_S, MAX_ATTEMPTS, Notification
from chalicelib.domain.slices import MAX_SQS_DELAY
from chalicelib.ports import (
    Alert,
    Clock,
    FakeClock,
    NotificationStore,
    Notifier,
    Queue,
    SliceMessage,
    StartGroup,
    StartMessage,
)

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

    def send_starts(self, messages: Sequence[StartMessage | StartGroup]) -> None:
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


class MemoryNotificationStore(NotificationStore):
    """The NotificationStore port in memory, with DynamoDB's conditions: a key is written
    once ever (pending or settled), a claim holds only if the record is still as read."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: dict[str, Notification] = {}
        self.emits = 0  # conditional writes asked of the store (the finishing path's cost)

    def emit(self, notes: Sequence[Notification]) -> int:
        with self.lock:
            self.emits += 1
            if any(n.key in self.records for n in notes):
                return 0  # written together: one there means all are
            for n in notes:
                self.records[n.key] = n
            return len(notes)

    def due_notifications(self, now: float, limit: int = 100) -> list[Notification]:
        with self.lock:
            due = [
                n
                for n in self.records.values()
                if n.status == "pending"
                and n.next_at <= now
                and (n.claimed_until is None or n.claimed_until < now)
            ]
        return sorted(due, key=lambda n: n.next_at)[:limit]

    def claim_notification(self, note: Notification, now: float) -> Notification | None:
        with self.lock:
            stored = self.records.get(note.key)
            if stored is None or stored.status != "pending" or stored.attempts != note.attempts:
                return None
            if stored.claimed_until is not None and stored.claimed_until >= now:
                return None
            claimed = replace(stored, attempts=stored.attempts + 1, claimed_until=now + CLAIM_S)
            self.records[note.key] = claimed
            return claimed

    def settle_notification(self, note: Notification, now: float, error: str | None) -> None:
        with self.lock:
            stored = self.records.get(note.key)
            if stored is None or stored.attempts != note.attempts or stored.status != "pending":
                return
            if error is None:
                self.records[note.key] = replace(
                    stored, status="delivered", settled_at=now, last_error=None
                )
            elif note.attempts >= MAX_ATTEMPTS:
                self.records[note.key] = replace(
                    stored, status="failed", settled_at=now, last_error=error
                )
            else:
                self.records[note.key] = replace(
                    stored, next_at=note.next_at, claimed_until=None, last_error=error
                )

    def list_notifications(self, status: str, limit: int = 100) -> list[Notification]:
        with self.lock:
            found = [n for n in self.records.values() if n.status == status]
        return sorted(found, key=lambda n: n.settled_at or n.created, reverse=True)[:limit]
