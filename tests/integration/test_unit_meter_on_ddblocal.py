"""The unit meter (cadenza_tools.dynamodb_units) on real PynamoDB calls to DynamoDB Local:
the wire formats, the side reads DynamoDB accepts, the errors PynamoDB raises. Expected
figures by hand from AWS's rules (the unit tests hold the rules themselves)."""

# mypy: disallow-untyped-calls=False
# (PynamoDB's Index.__init_subclass__ is untyped upstream, as in adapters/dynamodb/indexes.py)

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from cadenza_tools.dynamodb_units import metering

pytestmark = pytest.mark.ddblocal


class DueIndex(GlobalSecondaryIndex["Item"]):
    class Meta:
        index_name = "due"
        projection = IncludeProjection(["state"])

    shard = NumberAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


class Item(Model):
    class Meta:
        table_name = "unset"
        region = "us-east-1"
        billing_mode = "PAY_PER_REQUEST"

    pk = UnicodeAttribute(hash_key=True)
    sk = NumberAttribute(range_key=True)
    state = UnicodeAttribute(null=True)
    body = UnicodeAttribute(null=True)
    shard = NumberAttribute(null=True)
    due_at = NumberAttribute(null=True)
    due: DueIndex = DueIndex()


@pytest.fixture
def items(ddb_local: str) -> Iterator[type[Item]]:
    class Bound(Item):
        class Meta(Item.Meta):
            table_name = f"meter-{uuid.uuid4().hex[:8]}"
            host = ddb_local
            aws_access_key_id = "x"
            aws_secret_access_key = "x"

    Bound.create_table(wait=True)
    yield Bound
    Bound.delete_table()


def test_writes_transactions_and_an_index_key_moved(items: type[Item], ddb_local: str) -> None:
    table = items.Meta.table_name
    with metering() as meter:
        # 78 bytes ("pk" 2+1, "sk" 2+2, "state" 5+2, "shard" 5+2, "due_at" 6+2, "body" 4+45):
        # 1 unit, and 1 on `due` (it enters the index)
        items("a", 1, state="on", shard=1, due_at=100, body="x" * 45).save()
        first = meter.take()
        # the same key, refused by its condition: the existing item's size, 1 unit
        with pytest.raises(PutError):
            items("a", 1).save(condition=items.pk.does_not_exist())
        refused = meter.take()
        # due_at 100 -> 160: the table 1, `due` 2 (a delete and a put)
        items("a", 1).update(actions=[items.due_at.set(160)])
        moved = meter.take()
        # a transaction: a put of a new item (2 x 1; no `due` key, so no index write) and a
        # check of "a" (2 x 1)
        with TransactWrite(connection=Connection(host=ddb_local)) as tx:
            tx.save(items("b", 1, body="y"))
            tx.condition_check(items, "a", 1, condition=items.state == "on")
        transaction = meter.take()
        # the same check failing cancels it: one write of each item as it is (1 + 1)
        with (
            pytest.raises(TransactWriteError),
            TransactWrite(connection=Connection(host=ddb_local)) as tx,
        ):
            tx.save(items("c", 1, body="z"))
            tx.condition_check(items, "a", 1, condition=items.state == "off")
        cancelled = meter.take()
    assert first.write_units == {table: 1.0, f"{table} due": 1.0}
    assert refused.write_units == {table: 1.0}
    assert moved.write_units == {table: 1.0, f"{table} due": 2.0}
    assert transaction.write_units == {table: 4.0}
    assert cancelled.write_units == {table: 2.0}
    # DynamoDB Local's own answer, kept beside: it agrees on single writes, not on
    # transactions (4 for these two items, as for one alone: docs/costs.md)
    assert (first.local_write_units, moved.local_write_units) == (2.0, 3.0)


def test_a_filtered_query_over_10_items(items: type[Item]) -> None:
    table = items.Meta.table_name
    for i in range(10):  # "pk" 2+1, "sk" 2+2 (10..19: 2 bytes), "body" 4+489: 500 bytes
        items("p", 10 + i, body="x" * 489).save()
    with metering() as meter:
        found = list(items.query("p", filter_condition=items.body == "-"))
        counted = items.count("p", items.sk > 14)
    # the filter kept nothing: the 10 items evaluated still cost 5,000 bytes, 8 KB, 1 unit
    # eventually consistent; the count of 5 items, 2,500 bytes: 0.5
    assert (found, counted) == ([], 5)
    assert meter.take().read_units == {table: 1.0 + 0.5}
