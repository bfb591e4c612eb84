"""DynamoDB's read and write units computed as AWS bills them, from the requests and the items.

DynamoDB Local answers ``ReturnConsumedCapacity`` with an accounting of its own (4 units for
a TransactWriteItems of one small item, where AWS bills 2; 4 for 2 to 10 items on one table,
where AWS bills 2 an item), so the cost meter (``cadenza_tools.cost``) and the write-unit
test compute the units here instead, by AWS's documented rules:

* **Item size** (CapacityUnitCalculations, "DynamoDB item sizes and formats",
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
  the sum over the attributes of the UTF-8 length of the name plus the value's size: a
  string its UTF-8 bytes, a binary its raw bytes, a number 1 byte per two significant digits
  plus 1 (leading and trailing zeros trimmed; AWS says "approximately"), a boolean or null
  1 byte, a list or map 3 bytes plus its elements plus 1 byte an element (a map element
  counts its name too); a set is counted as the sum of its elements (the page gives no set
  overhead). The 100 bytes an item takes for indexing are storage, not throughput.
* **Writes** (ProvisionedThroughput, "Capacity unit consumption for writes", and
  read-write-operations,
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html):
  one unit a KB (1,024 bytes), rounded up, at least one; PutItem the larger of the item it
  replaces and the new one; UpdateItem the larger of the item before and after; DeleteItem
  the deleted item (one unit if there was none); BatchWriteItem each put or delete as its own
  request, each rounded up (unprocessed items cost nothing); a conditional write whose
  condition fails still consumes: the existing item's size, or one unit if there is none
  (WorkingWithItems, "Capacity units consumed by conditional writes").
* **Transactions** (transaction-apis, "Capacity management for transactions",
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html):
  two underlying writes of every item, one to prepare and one to commit, so each Put,
  Update, Delete and ConditionCheck costs twice its write units (a ConditionCheck sized by
  the item it checks, one unit a write if there is none: the page counts every item of the
  transaction). TransactGetItems: two strongly consistent reads an item.
* **Secondary indexes** (GSI, "Write capacity units", and LSI, same section,
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.ThroughputConsiderations.Writes):
  a write that puts an item into an index (all the index's keys now defined) costs one write
  there, one that takes it out one write, one that changes an index key two (a delete and a
  put), one that changes only projected attributes one, one that changes nothing projected
  nothing; each sized by the index entry (the table's keys, the index's keys and its
  projected attributes), rounded up a KB.
* **Reads** (read-write-operations, "Capacity unit consumption for reads", Query and Scan,
  "Capacity units consumed by query/scan"): a strongly consistent read one unit a 4 KB,
  eventually consistent half (GSIs are always eventual); GetItem the whole item whatever the
  projection, a missing item still one read; BatchGetItem each item rounded up on its own;
  Query and Scan the items evaluated (before any filter, whatever the projection or
  ``Select``), summed then rounded up once per call, at least one read a call; an index query
  sized by its index entries.

What is not exact, and why:

* A cancelled transaction (a condition failed, a conflict): the pages say nothing of what it
  consumes; it is counted as its prepare phase, one write of each item at its current size,
  and no index write.
* A refused conditional write of an existing item: WorkingWithItems sizes it by the
  existing item, the older ProvisionedThroughput page by the new one; the existing item's
  size is used.
* Index writes of a transaction are counted once (the pages double the items' writes and say
  nothing of the propagation to the indexes, which happens after the commit).
* The number size follows AWS's "approximately"; a Query on a local secondary index that
  fetches unprojected attributes from the table is sized by the index entries only (Cadenza
  has no LSI).
* The item before a write is read on the side just before it (a consistent GetItem), the
  item after an update just after it: a concurrent write of the same item in between makes
  that one write's figure off.

The meter adds to the requests it observes only ``ReturnConsumedCapacity=INDEXES`` (so
DynamoDB Local's own figure is kept beside, for comparison) and makes its side reads on
the same client, outside what the application sees.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from pynamodb.connection.base import Connection

Item = Mapping[str, Any]  # attribute name -> typed value, as on the wire ({"S": "x"})
WRITE_KB = 1024
READ_KB = 4096
WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})


# ---- sizes and units: pure ---------------------------------------------------------------


def number_size(text: str) -> int:
    """1 byte per two significant digits, plus 1 (leading and trailing zeros trimmed)."""
    mantissa = re.split("[eE]", text.strip().lstrip("+-"))[0].replace(".", "")
    digits = mantissa.strip("0")
    return math.ceil(len(digits) / 2) + 1


def _raw(value: Any) -> int:
    return len(value.encode() if isinstance(value, str) else bytes(value))


def value_size(value: Mapping[str, Any]) -> int:
    """The size of one typed value (without its attribute name)."""
    ((kind, v),) = value.items()
    sizes: dict[str, Callable[[Any], int]] = {
        "S": lambda s: len(s.encode()),
        "N": number_size,
        "B": _raw,
        "BOOL": lambda _: 1,
        "NULL": lambda _: 1,
        "SS": lambda ss: sum(len(s.encode()) for s in ss),
        "NS": lambda ns: sum(number_size(n) for n in ns),
        "BS": lambda bs: sum(_raw(b) for b in bs),
        "L": lambda items: 3 + sum(value_size(e) + 1 for e in items),
        "M": lambda m: 3 + sum(len(k.encode()) + value_size(e) + 1 for k, e in m.items()),
    }
    return sizes[kind](v)


def item_size(item: Item | None) -> int:
    """An item's size in bytes (0 for no item): its attribute names plus values."""
    return sum(len(name.encode()) + value_size(v) for name, v in (item or {}).items())


def write_units(size: int) -> int:
    """Write units of one item written: a unit a KB, rounded up, at least one."""
    return max(1, math.ceil(size / WRITE_KB))


def read_units(size: int, consistent: bool) -> float:
    """Read units of one read of ``size`` bytes: a unit a 4 KB, rounded up, at least one;
    half for an eventually consistent read."""
    units = max(1, math.ceil(size / READ_KB))
    return float(units) if consistent else units / 2


# ---- tables and their indexes --------------------------------------------------------------


@dataclass(frozen=True)
class IndexShape:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    included: frozenset[str] = frozenset()
    global_: bool = True


@dataclass(frozen=True)
class TableShape:
    name: str
    keys: tuple[str, ...]
    indexes: tuple[IndexShape, ...] = ()

    @classmethod
    def from_description(cls, table: Mapping[str, Any]) -> TableShape:
        """From DescribeTable's ``Table``."""
        indexes = []
        for kind, global_ in (("GlobalSecondaryIndexes", True), ("LocalSecondaryIndexes", False)):
            for index in table.get(kind) or []:
                projection = index.get("Projection") or {}
                indexes.append(
                    IndexShape(
                        name=index["IndexName"],
                        keys=tuple(k["AttributeName"] for k in index["KeySchema"]),
                        projection=projection.get("ProjectionType", "ALL"),
                        included=frozenset(projection.get("NonKeyAttributes") or ()),
                        global_=global_,
                    )
                )
        keys = tuple(k["AttributeName"] for k in table["KeySchema"])
        return cls(table["TableName"], keys, tuple(indexes))

    def key_of(self, item: Item) -> dict[str, Any]:
        return {k: item[k] for k in self.keys}

    def index(self, name: str) -> IndexShape:
        return next(i for i in self.indexes if i.name == name)

    def entry(self, index: IndexShape, item: Item | None) -> dict[str, Any] | None:
        """The item's entry in ``index`` (its keys and projected attributes), or None if the
        item is not in it (one of the index's keys undefined)."""
        if item is None or any(k not in item for k in index.keys):
            return None
        if index.projection == "ALL":
            return dict(item)
        wanted = set(self.keys) | set(index.keys) | set(index.included)
        return {k: v for k, v in item.items() if k in wanted}


def index_write_units(
    shape: TableShape, index: IndexShape, before: Item | None, after: Item | None
) -> int:
    """Write units a table write costs on one index (GSI.html, "Write capacity units")."""
    old, new = shape.entry(index, before), shape.entry(index, after)
    if old == new:
        return 0  # not in the index before nor after, or nothing projected changed
    if old is None or new is None:
        return write_units(item_size(old if new is None else new))  # put in, or taken out
    if any(old[k] != new[k] for k in index.keys):
        return write_units(item_size(old)) + write_units(item_size(new))  # a delete and a put
    return write_units(max(item_size(old), item_size(new)))  # projected attributes only


def write_cost(
    shape: TableShape, before: Item | None, after: Item | None, transactional: bool = False
) -> dict[str, float]:
    """A successful write's units: on the table (the larger of the item before and after,
    twice in a transaction) and on each index it touches, keyed "table" and "table index"."""
    times = 2 if transactional else 1
    units = {shape.name: float(times * write_units(max(item_size(before), item_size(after))))}
    for index in shape.indexes:
        n = index_write_units(shape, index, before, after)
        if n:
            units[f"{shape.name} {index.name}"] = float(n)
    return units


def refused_write_cost(shape: TableShape, existing: Item | None) -> dict[str, float]:
    """A conditional write whose condition failed (or a cancelled transaction's item): the
    existing item's size, one unit if there is none; no index write."""
    return {shape.name: float(write_units(item_size(existing)))}


def check_cost(shape: TableShape, existing: Item | None) -> dict[str, float]:
    """A ConditionCheck of a transaction that went through: two writes of the checked item."""
    return {shape.name: float(2 * write_units(item_size(existing)))}


def query_cost(sizes: Iterable[int], consistent: bool) -> float:
    """A Query's or a Scan's units: the items evaluated, summed, rounded up once."""
    return read_units(sum(sizes), consistent)


def batch_get_cost(sizes: Iterable[int], consistent: bool) -> float:
    """BatchGetItem: each item rounded up on its own (a missing item still one read)."""
    return sum(read_units(s, consistent) for s in sizes)


# ---- the meter ---------------------------------------------------------------------------


@dataclass
class Bill:
    """Units computed by AWS's rules, and DynamoDB Local's own answer beside them."""

    # "table" or "table index" -> units, writes and reads apart
    write_units: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    read_units: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    # "Operation table" or "Operation table index" -> units
    by_operation: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: Counter[str] = field(default_factory=Counter)  # operation -> calls
    local_write_units: float = 0.0  # what DynamoDB Local answered (ConsumedCapacity)
    local_read_units: float = 0.0

    @property
    def writes(self) -> float:
        return sum(self.write_units.values())

    @property
    def reads(self) -> float:
        return sum(self.read_units.values())


# what narrows what a read returns (not what it consumes), and what the side query drops
_NARROWING = (
    "FilterExpression",
    "ProjectionExpression",
    "Select",
    "AttributesToGet",
    "QueryFilter",
    "ScanFilter",
)
_PRUNED = (*_NARROWING, "ConditionalOperator", "Limit", "ReturnConsumedCapacity")


def _uses_only_keys(request: Mapping[str, Any]) -> bool:
    return not any(k in request for k in _NARROWING)


def _side_query(request: Mapping[str, Any], limit: int) -> dict[str, Any]:
    """The request that reads the same items, whole (no filter, no projection): only the
    expression names and values its key condition uses are kept (DynamoDB refuses unused
    ones)."""
    side = {k: v for k, v in request.items() if k not in _PRUNED}
    used = set(re.findall(r"[#:][A-Za-z0-9_]+", side.get("KeyConditionExpression", "")))
    for part in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
        kept = {k: v for k, v in (side.pop(part, None) or {}).items() if k in used}
        if kept:
            side[part] = kept
    side["Limit"] = limit
    return side


def _local_units(response: Mapping[str, Any] | None) -> float:
    consumed = (response or {}).get("ConsumedCapacity") or []
    consumed = consumed if isinstance(consumed, list) else [consumed]
    return sum(float(c.get("CapacityUnits", 0)) for c in consumed)


class UnitMeter:
    """Observes DynamoDB calls made through PynamoDB and computes their units (``Bill``).

    Side reads (items before and after a write, whole items behind a projection, the items a
    filtered Query evaluated, table descriptions) go through the same botocore client, not
    through PynamoDB: they are not metered, and their time is kept per thread
    (``side_seconds``) so that a caller timing a handler can take it off."""

    def __init__(self) -> None:
        self.bill = Bill()
        self._shapes: dict[str, TableShape] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def take(self) -> Bill:
        with self._lock:
            bill, self.bill = self.bill, Bill()
        return bill

    def side_seconds(self) -> float:
        """Seconds this thread spent in side reads since the meter was made."""
        return float(getattr(self._local, "seconds", 0.0))

    # -- side calls --

    @contextmanager
    def _side(self) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self._local.seconds = self.side_seconds() + time.monotonic() - started

    def shape(self, client: Any, table: str) -> TableShape:
        if table not in self._shapes:
            with self._side():
                description = client.describe_table(TableName=table)["Table"]
            self._shapes[table] = TableShape.from_description(description)
        return self._shapes[table]

    def _get(self, client: Any, table: str, key: Item) -> Item | None:
        with self._side():
            item: Item | None = client.get_item(
                TableName=table, Key=dict(key), ConsistentRead=True
            ).get("Item")
        return item

    # -- the call --

    def call(
        self, client: Any, operation: str, request: dict[str, Any], send: Callable[[], Any]
    ) -> Any:
        """Make the call (``send``) and record its units."""
        if operation not in WRITES | READS:
            return send()
        with self._lock:
            self.bill.calls[operation] += 1
        writes = self._write_plan(client, operation, request) if operation in WRITES else None
        try:
            response = send()
        except ClientError as error:
            if writes is not None:
                self._refused(client, error, writes)
            raise
        if writes is not None:
            self._wrote(client, operation, request, response, writes)
        else:
            self._read(client, operation, request, response)
        with self._lock:
            if operation in WRITES:
                self.bill.local_write_units += _local_units(response)
            else:
                self.bill.local_read_units += _local_units(response)
        return response

    def _record(self, operation: str, units: Mapping[str, float], write: bool) -> None:
        with self._lock:
            into = self.bill.write_units if write else self.bill.read_units
            for where, n in units.items():
                into[where] += n
                self.bill.by_operation[f"{operation} {where}"] += n

    # -- writes --

    def _write_plan(self, client: Any, operation: str, request: Mapping[str, Any]) -> list[Action]:
        """Each item the call writes or checks, with the item as it is now."""
        actions = list(_actions(operation, request))
        for action in actions:
            shape = self.shape(client, action.table)
            action.key = action.key or shape.key_of(action.item or {})
            action.before = self._get(client, action.table, action.key)
        return actions

    def _refused(self, client: Any, error: ClientError, actions: list[Action]) -> None:
        code = error.response.get("Error", {}).get("Code", "")
        if code not in ("ConditionalCheckFailedException", "TransactionCanceledException"):
            return  # refused before any item was touched (validation, throttling)
        for action in actions:
            shape = self.shape(client, action.table)
            self._record(action.operation, refused_write_cost(shape, action.before), write=True)

    def _wrote(
        self,
        client: Any,
        operation: str,
        request: Mapping[str, Any],
        response: Mapping[str, Any],
        actions: list[Action],
    ) -> None:
        unprocessed = self._unprocessed_writes(client, response)
        transactional = operation == "TransactWriteItems"
        for action in actions:
            shape = self.shape(client, action.table)
            if (action.table, _frozen(action.key)) in unprocessed:
                continue
            if action.kind == "ConditionCheck":
                units = check_cost(shape, action.before)
            else:
                after = self._after(client, action, request, response)
                units = write_cost(shape, action.before, after, transactional)
            self._record(operation, units, write=True)

    def _after(
        self, client: Any, action: Action, request: Mapping[str, Any], response: Mapping[str, Any]
    ) -> Item | None:
        if action.kind == "Delete":
            return None
        if action.kind == "Put":
            return action.item
        if request.get("ReturnValues") == "ALL_NEW" and "Attributes" in response:
            attributes: Item = response["Attributes"]
            return attributes
        return self._get(client, action.table, action.key or {})

    def _unprocessed_writes(self, client: Any, response: Mapping[str, Any]) -> set[tuple[str, str]]:
        """(table, key) of the items a BatchWriteItem left unprocessed (they cost nothing)."""
        out: set[tuple[str, str]] = set()
        for table, requests in (response.get("UnprocessedItems") or {}).items():
            shape = self.shape(client, table)
            for r in requests:
                key = r["DeleteRequest"]["Key"] if "DeleteRequest" in r else None
                out.add((table, _frozen(key or shape.key_of(r["PutRequest"]["Item"]))))
        return out

    # -- reads --

    def _read(
        self, client: Any, operation: str, request: Mapping[str, Any], response: Mapping[str, Any]
    ) -> None:
        readers: dict[str, Callable[[Any, Mapping[str, Any], Mapping[str, Any]], dict[str, float]]]
        readers = {
            "GetItem": self._get_item,
            "Query": self._query,
            "Scan": self._query,
            "BatchGetItem": self._batch_get,
            "TransactGetItems": self._transact_get,
        }
        self._record(operation, readers[operation](client, request, response), write=False)

    def _whole(
        self, client: Any, table: str, key: Item, got: Item | None, narrowed: bool
    ) -> Item | None:
        """The whole item behind a read (a projection does not make a read cheaper)."""
        return self._get(client, table, key) if narrowed else got

    def _get_item(
        self, client: Any, request: Mapping[str, Any], response: Mapping[str, Any]
    ) -> dict[str, float]:
        table = request["TableName"]
        narrowed = "ProjectionExpression" in request or "AttributesToGet" in request
        item = self._whole(client, table, request["Key"], response.get("Item"), narrowed)
        return {table: read_units(item_size(item), bool(request.get("ConsistentRead")))}

    def _query(
        self, client: Any, request: Mapping[str, Any], response: Mapping[str, Any]
    ) -> dict[str, float]:
        table, index = request["TableName"], request.get("IndexName")
        shape = self.shape(client, table)
        global_ = index is not None and shape.index(index).global_
        consistent = bool(request.get("ConsistentRead")) and not global_
        items = response.get("Items", [])
        scanned = int(response.get("ScannedCount", len(items)))
        if not _uses_only_keys(request) and scanned:
            items = self._evaluated(client, request, scanned)
        where = f"{table} {index}" if global_ else table
        return {where: query_cost((item_size(i) for i in items), consistent)}

    def _evaluated(self, client: Any, request: Mapping[str, Any], scanned: int) -> list[Item]:
        """The items a filtered or projected Query or Scan evaluated, whole."""
        side = _side_query(request, scanned)
        method = (
            client.query
            if "KeyConditionExpression" in side or "KeyConditions" in side
            else client.scan
        )
        items: list[Item] = []
        with self._side():
            while len(items) < scanned:
                page = method(**side)
                items += page.get("Items", [])
                if "LastEvaluatedKey" not in page:
                    break
                side = {
                    **side,
                    "ExclusiveStartKey": page["LastEvaluatedKey"],
                    "Limit": scanned - len(items),
                }
        return items

    def _batch_get(
        self, client: Any, request: Mapping[str, Any], response: Mapping[str, Any]
    ) -> dict[str, float]:
        units: dict[str, float] = {}
        unprocessed = _unprocessed_keys(response)
        for table, wanted in request["RequestItems"].items():
            shape = self.shape(client, table)
            got = {
                _frozen(shape.key_of(i)): i for i in response.get("Responses", {}).get(table, [])
            }
            narrowed = "ProjectionExpression" in wanted or "AttributesToGet" in wanted
            sizes = []
            for key in wanted["Keys"]:
                if (table, _frozen(key)) in unprocessed:
                    continue
                item = self._whole(client, table, key, got.get(_frozen(key)), narrowed)
                sizes.append(item_size(item))
            units[table] = batch_get_cost(sizes, bool(wanted.get("ConsistentRead")))
        return units

    def _transact_get(
        self, client: Any, request: Mapping[str, Any], response: Mapping[str, Any]
    ) -> dict[str, float]:
        units: defaultdict[str, float] = defaultdict(float)
        for asked, got in zip(
            request["TransactItems"], response.get("Responses", []), strict=False
        ):
            get = asked["Get"]
            narrowed = "ProjectionExpression" in get
            item = self._whole(client, get["TableName"], get["Key"], got.get("Item"), narrowed)
            units[get["TableName"]] += 2 * read_units(item_size(item), consistent=True)
        return dict(units)


@dataclass
class Action:
    """One item a write call puts, updates, deletes or checks."""

    operation: str
    kind: str  # Put, Update, Delete or ConditionCheck
    table: str
    key: dict[str, Any] | None = None
    item: Item | None = None  # a put's new item
    before: Item | None = None


def _actions(operation: str, request: Mapping[str, Any]) -> Iterator[Action]:
    single = {"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete"}
    if operation in single:
        yield _action(operation, single[operation], request)
    elif operation == "BatchWriteItem":
        for table, requests in request["RequestItems"].items():
            for r in requests:
                kind = "Put" if "PutRequest" in r else "Delete"
                yield _action(operation, kind, {"TableName": table, **r[f"{kind}Request"]})
    else:
        for entry in request["TransactItems"]:
            ((kind, body),) = entry.items()
            yield _action(operation, kind, body)


def _action(operation: str, kind: str, body: Mapping[str, Any]) -> Action:
    key = dict(body["Key"]) if "Key" in body else None
    return Action(operation, kind, body["TableName"], key=key, item=body.get("Item"))


def _frozen(key: Mapping[str, Any] | None) -> str:
    return repr(sorted((key or {}).items()))


def _unprocessed_keys(response: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(table, key) of the items a BatchGetItem left unprocessed (they cost nothing)."""
    out: set[tuple[str, str]] = set()
    for table, wanted in (response.get("UnprocessedKeys") or {}).items():
        out |= {(table, _frozen(k)) for k in wanted.get("Keys", [])}
    return out


@contextmanager
def metering(meter: UnitMeter | None = None) -> Iterator[UnitMeter]:
    """Meter every DynamoDB call PynamoDB makes inside the block (all threads)."""
    meter = meter or UnitMeter()
    original = Connection.dispatch

    def dispatch(self: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> Any:
        if operation_name not in WRITES | READS:
            return original(self, operation_name, operation_kwargs)
        kwargs = {**operation_kwargs, "ReturnConsumedCapacity": "INDEXES"}
        return meter.call(
            self.client, operation_name, kwargs, lambda: original(self, operation_name, kwargs)
        )

    Connection.dispatch = dispatch  # type: ignore[method-assign]  # undone below
    try:
        yield meter
    finally:
        Connection.dispatch = original  # type: ignore[method-assign]
