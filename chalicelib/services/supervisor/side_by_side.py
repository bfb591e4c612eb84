"""Work the supervisor does side by side: one thread pool for its life (its threads keep
their store clients), or inline when it has one thread or one item."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class SideBySide:
    """Maps a function over items, `width` at a time, on a pool made on first use."""

    def __init__(self, width: int, name: str) -> None:
        self.width, self.name = width, name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`fn` of each item, in order; exceptions propagate as the items' own."""
        if len(items) <= 1 or self.width <= 1:
            return [fn(item) for item in items]
        return list(self._get().map(fn, items))

    def _get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.width, thread_name_prefix=self.name)
            return self._pool
