"""Counting DynamoDB calls, items read and items written, for benchmarks and budget tests.

It wraps PynamoDB's single dispatch point (every model and transaction call goes through
`Connection.dispatch`), so what it counts is what reached DynamoDB, per operation."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
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
        # with counting(units=True): the units DynamoDB answered, by "table" and
        # "table index" (ReturnConsumedCapacity=INDEXES), writes and reads apart
        self.write_units: defaultdict[str, float] = defaultdict(float)
        self.read_units: defaultdict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def record_units(self, operation: str, response: dict[str, Any] | None) -> None:
        """The units a call consumed, on its table and on each index."""
        consumed = (response or {}).get("ConsumedCapacity") or []
        into = self.write_units if operation in WRITES else self.read_units
        with self._lock:
            for c in consumed if isinstance(consumed, list) else [consumed]:
                table = str(c.get("TableName"))
                into[table] += float(c.get("Table", {}).get("CapacityUnits", 0))
                for index, used in (c.get("GlobalSecondaryIndexes") or {}).items():
                    into[f"{table} {index}"] += float(used.get("CapacityUnits", 0))

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
def counting(units: bool = False) -> Iterator[CallCounter]:
    """Count every DynamoDB call made through PynamoDB inside the block (all threads),
    answered or refused (a failed condition is a call DynamoDB served); with `units`, ask
    each call for its consumed capacity and sum it (CallCounter.write_units)."""
    counter = CallCounter()
    original = Connection.dispatch

    def dispatch(self: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> Any:
        if units and operation_name in WRITES | READS:
            operation_kwargs = {**operation_kwargs, "ReturnConsumedCapacity": "INDEXES"}
        try:
            response = original(self, operation_name, operation_kwargs)
        except Exception:  # a refused conditional write is a call too
            counter.record(operation_name, None, operation_kwargs)
            raise
        counter.record(operation_name, response, operation_kwargs)
        if units:
            counter.record_units(operation_name, response)
        return response

    Connection.dispatch = dispatch  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        Connection.dispatch = original  # type: ignore[method-assign]
