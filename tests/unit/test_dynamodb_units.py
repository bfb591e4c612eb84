"""DynamoDB's units by AWS's rules (cadenza_tools.dynamodb_units): every expected figure
below is worked out by hand from the rules the module's docstring cites."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cadenza_tools.dynamodb_units import (
    IndexShape,
    TableShape,
    UnitMeter,
    batch_get_cost,
    index_write_units,
    item_size,
    number_size,
    query_cost,
    read_units,
    write_cost,
    write_units,
)

JOBS = TableShape(
    "jobs",
    ("job_id",),
    (
        # keys due_shard, next_at; projects `state` besides the keys
        IndexShape("due", ("due_shard", "next_at"), "INCLUDE", frozenset({"state"})),
        IndexShape("all", ("owner",), "ALL"),
    ),
)


def s(text: str) -> dict[str, str]:
    return {"S": text}


def n(text: str) -> dict[str, str]:
    return {"N": text}


def test_sizes_by_type() -> None:
    # "pk" 2 + "job#1" 5 = 7; "n" 1 + 123.45 (5 significant digits: 3 bytes + 1) = 5;
    # "ok" 2 + 1 = 3: 15 bytes
    assert item_size({"pk": s("job#1"), "n": n("123.45"), "ok": {"BOOL": True}}) == 15
    # leading and trailing zeros do not count: 0.00120 is "12", 1 byte + 1
    assert number_size("0.00120") == 2
    assert number_size("-1e10") == 2
    # "m" 1 + map (3 + "a": 1 + 2 + 1 = 4, "l": 1 + list (3 + (1+1)+1 + 1+1 = 8) + 1 = 10) = 18
    nested = {"a": s("xy"), "l": {"L": [n("1"), {"NULL": True}]}}
    assert item_size({"m": {"M": nested}}) == 18
    # a set: its elements; a binary: its raw bytes; UTF-8 bytes of a string ("é" is 2)
    assert item_size({"t": {"SS": ["ab", "é"]}, "b": {"B": b"\x00\x01\x02"}}) == 1 + 4 + 1 + 3
    assert item_size(None) == 0


def test_small_and_large_items() -> None:
    small = {"job_id": s("j1"), "body": s("x" * 300)}  # 6 + 2 + 4 + 300 = 312 bytes
    assert item_size(small) == 312
    assert write_units(item_size(small)) == 1
    assert read_units(item_size(small), consistent=True) == 1.0
    assert read_units(item_size(small), consistent=False) == 0.5
    large = {"job_id": s("j1"), "body": s("x" * 1500)}  # 1,512 bytes: 2 KB, one 4 KB
    assert write_units(item_size(large)) == 2
    assert read_units(item_size(large), consistent=True) == 1.0
    huge = {"job_id": s("j1"), "body": s("x" * 9000)}  # 9,012 bytes: 9 KB, three 4 KB
    assert write_units(item_size(huge)) == 9
    assert read_units(item_size(huge), consistent=True) == 3.0
    assert read_units(item_size(huge), consistent=False) == 1.5
    # nothing written or read still costs one unit (a missing item, a delete of none)
    assert write_units(0) == 1 and read_units(0, consistent=True) == 1.0


def test_an_update_costs_the_larger_of_before_and_after() -> None:
    table = TableShape("t", ("job_id",))
    before = {"job_id": s("j1"), "body": s("x" * 1500)}  # 1,512 bytes: 2 units
    after = {"job_id": s("j1"), "body": s("x" * 10)}  # 22 bytes: 1 unit
    assert write_cost(table, before, after) == {"t": 2.0}
    assert write_cost(table, after, before) == {"t": 2.0}
    assert write_cost(table, before, None) == {"t": 2.0}  # a delete: the deleted item
    assert write_cost(table, after, after, transactional=True) == {"t": 2.0}  # 2 x 1


def test_an_update_that_moves_an_index_key_writes_the_index_twice() -> None:
    base = {"job_id": s("j1"), "owner": s("ann"), "state": s("on"), "other": s("x")}
    due = JOBS.index("due")
    before = {**base, "due_shard": n("3"), "next_at": n("100")}
    # next_at 100 -> 160: a delete of the old entry and a put of the new one, each under
    # 1 KB: 2 writes on `due`; `all` projects every attribute, so it changes too: 1 write
    # (its key `owner` did not move); the table 1
    moved = {**before, "next_at": n("160")}
    assert write_cost(JOBS, before, moved) == {"jobs": 1.0, "jobs due": 2.0, "jobs all": 1.0}
    # a projected attribute only (`state`): 1 write on `due`
    assert index_write_units(JOBS, due, before, {**before, "state": s("off")}) == 1
    # an attribute `due` does not project: no write on `due`, 1 on `all`
    other = {**before, "other": s("y")}
    assert write_cost(JOBS, before, other) == {"jobs": 1.0, "jobs all": 1.0}
    # next_at removed: the item leaves `due` (1 write); added back: enters it (1 write)
    assert index_write_units(JOBS, due, before, base) == 1
    assert index_write_units(JOBS, due, base, before) == 1
    # not in the index before nor after: nothing
    assert index_write_units(JOBS, due, base, {**base, "state": s("off")}) == 0


def test_an_index_entry_is_sized_by_what_it_projects() -> None:
    body = s("x" * 3000)  # not projected in `due`
    item = {"job_id": s("j1"), "due_shard": n("3"), "next_at": n("100"), "body": body}
    entry = JOBS.entry(JOBS.index("due"), item)
    # job_id 6 + 2, due_shard 9 + 2 ("3": 1 byte + 1), next_at 7 + 2 (100 is "1")
    assert entry == {k: v for k, v in item.items() if k != "body"}
    assert item_size(entry) == 8 + 11 + 9
    moved = {**item, "next_at": n("160")}  # 160 -> "16": 2 bytes; the table item > 3 KB
    assert write_cost(JOBS, item, moved) == {"jobs": 3.0, "jobs due": 2.0}


def test_queries_round_once_a_call_and_batches_once_an_item() -> None:
    # a Query of 10 items of 500 bytes: 5,000 bytes, rounded up once to 8 KB: 2 units
    # strongly consistent, 1 eventually
    assert query_cost([500] * 10, consistent=True) == 2.0
    assert query_cost([500] * 10, consistent=False) == 1.0
    # AWS's GSI example: 8 entries of 2,000 bytes = 16,000 bytes -> 16 KB: 0.5 x 4 = 2
    assert query_cost([2000] * 8, consistent=False) == 2.0
    # a Query that finds nothing still costs its minimum
    assert query_cost([], consistent=False) == 0.5
    # AWS's BatchGetItem example: 1.5 KB and 6.5 KB items -> 4 KB + 8 KB: 3 units
    assert batch_get_cost([1536, 6656], consistent=True) == 3.0


# ---- the meter, on a table in memory -----------------------------------------------------


class FakeClient:
    """The few calls the meter makes on the side, over items in memory."""

    def __init__(self, *shapes: TableShape) -> None:
        self.shapes = {t.name: t for t in shapes}
        self.items: dict[str, dict[str, dict[str, Any]]] = {t.name: {} for t in shapes}
        self.queried: list[dict[str, Any]] = []

    def k(self, table: str, item: Mapping[str, Any]) -> str:
        return repr([item[a] for a in self.shapes[table].keys])

    def put(self, table: str, item: dict[str, Any]) -> None:
        self.items[table][self.k(table, item)] = item

    def describe_table(self, TableName: str) -> dict[str, Any]:
        t = self.shapes[TableName]
        return {
            "Table": {
                "TableName": t.name,
                "KeySchema": [{"AttributeName": a} for a in t.keys],
                "GlobalSecondaryIndexes": [
                    {
                        "IndexName": i.name,
                        "KeySchema": [{"AttributeName": a} for a in i.keys],
                        "Projection": {
                            "ProjectionType": i.projection,
                            "NonKeyAttributes": sorted(i.included),
                        },
                    }
                    for i in t.indexes
                ],
            }
        }

    def get_item(self, TableName: str, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        item = self.items[TableName].get(self.k(TableName, Key))
        return {"Item": item} if item else {}

    def query(self, **request: Any) -> dict[str, Any]:
        self.queried.append(request)
        items = list(self.items[request["TableName"]].values())[: request["Limit"]]
        return {"Items": items, "Count": len(items), "ScannedCount": len(items)}


def refused(code: str) -> Callable[[], Any]:
    def send() -> Any:
        raise ClientError({"Error": {"Code": code, "Message": "no"}}, "op")

    return send


def test_a_transaction_of_three_items_with_a_condition_check() -> None:
    client = FakeClient(TableShape("t", ("id",)))
    client.put("t", {"id": s("big"), "body": s("x" * 1500)})  # 1,509 bytes: 2 units
    client.put("t", {"id": s("lock"), "v": n("1")})  # 9 bytes: 1 unit
    new = {"id": s("new"), "body": s("x" * 300)}  # 309 bytes: 1 unit
    request = {
        "TransactItems": [
            {"Put": {"TableName": "t", "Item": new}},
            {"Update": {"TableName": "t", "Key": {"id": s("big")}, "UpdateExpression": "."}},
            {"ConditionCheck": {"TableName": "t", "Key": {"id": s("lock")}}},
        ]
    }

    def send() -> dict[str, Any]:
        client.put("t", new)
        client.put("t", {"id": s("big"), "body": s("y")})  # the update shrinks it
        return {"ConsumedCapacity": [{"TableName": "t", "CapacityUnits": 12.0}]}

    meter = UnitMeter()
    # cancelled (a condition failed): the prepare phase only, one write of each item as it
    # is: 1 (no item yet) + 2 + 1
    with pytest.raises(ClientError):
        meter.call(client, "TransactWriteItems", request, refused("TransactionCanceledException"))
    assert meter.take().write_units == {"t": 4.0}
    meter.call(client, "TransactWriteItems", request, send)
    bill = meter.take()
    # two writes an item: the put 2 x 1, the update 2 x max(2, 1), the check 2 x 1 = 8
    assert bill.write_units == {"t": 8.0}
    assert bill.local_write_units == 12.0  # what the endpoint answered, kept beside
    assert bill.calls == {"TransactWriteItems": 1}


def test_a_failed_conditional_write_costs_the_existing_item() -> None:
    client = FakeClient(TableShape("t", ("id",)))
    client.put("t", {"id": s("a"), "body": s("x" * 1500)})  # 1,507 bytes: 2 units
    put = {"TableName": "t", "Item": {"id": s("a")}, "ConditionExpression": "."}
    meter = UnitMeter()
    with pytest.raises(ClientError):
        meter.call(client, "PutItem", put, refused("ConditionalCheckFailedException"))
    missing = {"TableName": "t", "Key": {"id": s("b")}, "ConditionExpression": "."}
    with pytest.raises(ClientError):
        meter.call(client, "DeleteItem", missing, refused("ConditionalCheckFailedException"))
    with pytest.raises(ClientError):  # refused before any item was touched: nothing
        meter.call(client, "DeleteItem", missing, refused("ValidationException"))
    assert meter.take().write_units == {"t": 2.0 + 1.0}


def test_a_filtered_query_over_10_items_costs_the_items_it_evaluated() -> None:
    client = FakeClient(TableShape("t", ("pk", "sk")))
    for i in range(10):  # "pk" 2 + 1, "sk" 2 + 2, "body" 4 + 489: 500 bytes each
        client.put("t", {"pk": s("p"), "sk": n(str(10 + i)), "body": s("x" * 489)})
    assert all(item_size(i) == 500 for i in client.items["t"].values())
    request = {
        "TableName": "t",
        "KeyConditionExpression": "pk = :p",
        "FilterExpression": "#b = :none",
        "ExpressionAttributeNames": {"#b": "body"},
        "ExpressionAttributeValues": {":p": s("p"), ":none": s("-")},
    }
    meter = UnitMeter()
    # the filter kept no item: the 10 evaluated still cost 5,000 bytes -> 8 KB: 1 unit
    # eventually consistent
    meter.call(client, "Query", request, lambda: {"Items": [], "Count": 0, "ScannedCount": 10})
    everything = {"TableName": "t", "KeyConditionExpression": "pk = :p", "ConsistentRead": True}
    items = list(client.items["t"].values())
    meter.call(client, "Query", everything, lambda: {"Items": items, "ScannedCount": 10})
    assert meter.take().read_units == {"t": 1.0 + 2.0}
    # the side query read them whole, without the filter and its unused names and values
    assert client.queried == [
        {
            "TableName": "t",
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": s("p")},
            "Limit": 10,
        }
    ]
