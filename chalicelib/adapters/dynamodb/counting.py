"""Counting DynamoDB calls, items read and items written, for benchmarks and budget tests.

It wraps PynamoDB's single dispatch point (every model and transaction call goes through
`Connection.dispatch`), so what it counts is what reached DynamoDB, per operation."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pynamodb.connection.base import Connection

WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})


def _items_written(operation: str, request: dict[str, Any]) -> int:
    """Items a write call asks for (what write units are billed on: a transaction's items
    each cost two)."""
    if operation == "TransactWriteItems":
        return len(request.get("TransactItems", []))
    if operation == "BatchWriteItem":
        return sum(len(v) for v in request.get("RequestItems", {}).values())
    return 1 if operation in WRITES else 0


class CallCounter:
    """Calls by operation name, items read (returned or scanned) by reads, and items
    written by writes, answered or refused."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.items_read = 0
        self.items_written = 0
        self._lock = threading.Lock()

    def record(
        self, operation: str, response: dict[str, Any] | None, request: dict[str, Any] | None = None
    ) -> None:
        written = _items_written(operation, request or {})
        items = 0
        if response:
            if operation == "GetItem":
                items = 1 if response.get("Item") else 0
            elif operation in ("Query", "Scan"):
                items = int(response.get("ScannedCount", response.get("Count", 0)))
            elif operation == "BatchGetItem":
                items = sum(len(v) for v in response.get("Responses", {}).values())
        with self._lock:
            self.calls[operation] += 1
            self.items_read += items
            self.items_written += written

    @property
    def writes(self) -> int:
        return sum(n for op, n in self.calls.items() if op in WRITES)

    @property
    def reads(self) -> int:
        return sum(n for op, n in self.calls.items() if op in READS)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.items_read = self.items_written = 0


@contextmanager
def counting() -> Iterator[CallCounter]:
    """Count every DynamoDB call made through PynamoDB inside the block (all threads),
    answered or refused (a failed condition is a call DynamoDB served). The units AWS would
    bill for them: `cadenza_tools.dynamodb_units` (tooling, not shipped)."""
    counter = CallCounter()
    original = Connection.dispatch

    def dispatch(self: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> Any:
        try:
            response = original(self, operation_name, operation_kwargs)
        except Exception:  # a refused conditional write is a call too
            counter.record(operation_name, None, operation_kwargs)
            raise
        counter.record(operation_name, response, operation_kwargs)
        return response

    Connection.dispatch = dispatch  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        Connection.dispatch = original  # type: ignore[method-assign]
