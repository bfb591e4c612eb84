"""The runs this process starts on one second begin before any of them finishes.

A process that holds many runs due on one second (a burst's start batches: on Lambda, one
invocation; locally, every poller of the stack in one process) wakes them all at that
second. Each run's finishing write costs far more CPU than its begin (a store request built
and parsed), so finishes done as soon as each op ends would hold the later runs' begins
back. A run's finish therefore waits until every run held for its second has begun, for
at most `WAIT_S`: a stuck run cannot hold the others' leases."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

WAIT_S = 2.0


@dataclass
class _Second:
    left: int = 0
    all_begun: threading.Event = field(default_factory=threading.Event)


class SecondGate:
    """One run's part of its second's gate (`StartGate`)."""

    def __init__(self, gates: SecondGates, second: int, state: _Second) -> None:
        self._gates, self._second, self._state = gates, second, state
        self._done = False

    def begun(self) -> None:
        if not self._done:
            self._done = True
            self._gates._begun(self._second, self._state)

    def wait(self) -> None:
        self._state.all_begun.wait(self._gates.wait_s)


class SecondGates:
    """The gates of the seconds this process starts runs on."""

    def __init__(self, wait_s: float = WAIT_S) -> None:
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._seconds: dict[int, _Second] = {}

    def hold(self, start_at: float) -> SecondGate:
        """A run due at `start_at` is held: its second's runs wait for it to begin."""
        second = math.floor(start_at)
        with self._lock:
            state = self._seconds.setdefault(second, _Second())
            state.left += 1
        return SecondGate(self, second, state)

    def _begun(self, second: int, state: _Second) -> None:
        with self._lock:
            state.left -= 1
            if state.left > 0:
                return
            if self._seconds.get(second) is state:
                del self._seconds[second]
        state.all_begun.set()
