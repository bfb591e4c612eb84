"""An in-memory Queue for tests: records nudges and delivers them on demand."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chalicelib.ports import Alert, Notifier, Queue, SliceMessage, StartMessage


@dataclass
class Message:
    kind: str
    body: dict[str, Any]
    delay: int


@dataclass
class MemoryQueue(Queue):
    """Keeps every message sent; `drain` hands them to handlers (delays are ignored)."""

    messages: list[Message] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)

    def send_starts(self, messages: Sequence[StartMessage]) -> None:
        for msg in messages:
            self._put(Message("start", msg.body(), msg.delay))

    def send_slices(self, messages: Sequence[SliceMessage]) -> None:
        for msg in messages:
            self._put(Message("slice", msg.body(), msg.delay))

    def _put(self, msg: Message) -> None:
        self.messages.append(msg)
        self.sent.append(msg)

    def take(self) -> list[Message]:
        out, self.messages = self.messages, []
        return out

    def drain(self, handle: Callable[[Message], Any], limit: int = 5_000) -> int:
        """Deliver messages (including ones sent while draining) until none are left.
        Raises if more than `limit` are delivered: a message that keeps re-sending itself
        (say, a start that is early because a test's clock stands still) is a test bug."""
        n = 0
        while self.messages:
            if n >= limit:
                raise RuntimeError(f"still {len(self.messages)} messages after {limit}")
            handle(self.messages.pop(0))
            n += 1
        return n


@dataclass
class MemoryNotifier(Notifier):
    """Keeps every published alert."""

    published: list[Alert] = field(default_factory=list)

    def publish(self, alert: Alert) -> None:
        self.published.append(alert)
