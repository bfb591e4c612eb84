"""The RunLogStore adapters: S3 (on moto) and the in-memory fake, held to the same
contract: oldest first, filters by slice and minimum level, tokens that page and follow."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from chalicelib.adapters.s3_logs import MAX_GETS, S3RunLogStore
from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.logs import LogEntry, LogLevel
from chalicelib.ports import FakeClock, RunLogStore
from tests.fakes.runlogs import MemoryRunLogStore

T0 = 1_800_000_000.0
BUCKET = "run-logs-test"


def entry(slice_id: str, seq: int, level: LogLevel = LogLevel.INFO, attempt: int = 1) -> LogEntry:
    return LogEntry("ex1", slice_id, attempt, T0 + seq, seq, level, "stdout", f"{slice_id}:{seq}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture(params=["s3", "memory"])
def store(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[RunLogStore]:
    if request.param == "memory":
        yield MemoryRunLogStore()
        return
    request.getfixturevalue("aws")
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    yield S3RunLogStore(s3, BUCKET, clock)


def messages(entries: list[LogEntry]) -> list[str]:
    return [e.message for e in entries]


def write_three_batches(store: RunLogStore, clock: FakeClock) -> None:
    store.append([entry("000000", 1), entry("000000", 2, LogLevel.WARNING)])
    clock.advance(0.5)
    store.append([entry("000001", 1, LogLevel.ERROR), entry("000001", 2)])
    clock.advance(0.5)
    store.append([entry("000000", 3, LogLevel.DEBUG)])


def test_lines_come_oldest_first_and_filter_by_slice_and_level(
    store: RunLogStore, clock: FakeClock
) -> None:
    write_three_batches(store, clock)
    assert messages(store.read("ex1").entries) == [
        "000000:1",
        "000000:2",
        "000001:1",
        "000001:2",
        "000000:3",
    ]
    assert messages(store.read("ex1", slice_id="000000").entries) == [
        "000000:1",
        "000000:2",
        "000000:3",
    ]
    warned = store.read("ex1", level=LogLevel.WARNING).entries
    assert messages(warned) == ["000000:2", "000001:1"]
    assert store.read("another-ex").entries == []


def test_pages_go_on_from_their_token_each_line_once(store: RunLogStore, clock: FakeClock) -> None:
    write_three_batches(store, clock)
    clock.advance(10)  # everything settled: nothing comes twice
    seen: list[str] = []
    token = None
    for _ in range(5):
        page = store.read("ex1", token=token, limit=2)
        seen += messages(page.entries)
        token = page.next_token
        if len(page.entries) < 2:
            break
    assert seen == ["000000:1", "000000:2", "000001:1", "000001:2", "000000:3"]
    assert store.read("ex1", token=token).entries == []


def test_a_follower_gets_new_lines_from_the_token_it_was_given(
    store: RunLogStore, clock: FakeClock
) -> None:
    store.append([entry("000000", 1)])
    clock.advance(5)
    first = store.read("ex1")
    assert messages(first.entries) == ["000000:1"]
    assert store.read("ex1", token=first.next_token).entries == []
    store.append([entry("000000", 2), entry("000000", 3)])
    later = store.read("ex1", token=first.next_token)
    assert messages(later.entries)[-2:] == ["000000:2", "000000:3"]


def test_a_token_not_given_by_the_store_is_refused(store: RunLogStore) -> None:
    with pytest.raises(InvalidInput) as err:
        store.read("ex1", token="not-a-token!")
    assert err.value.details == {
        "errors": [{"field": "token", "reason": "not a token this route gave"}]
    }


def test_appending_the_same_batch_again_keeps_one(store: RunLogStore, clock: FakeClock) -> None:
    batch = [entry("000000", 1), entry("000000", 2)]
    store.append(batch)
    store.append(batch)
    clock.advance(0.5)  # sent again later (S3: another object; a page shows its lines once)
    store.append(batch)
    assert messages(store.read("ex1").entries) == ["000000:1", "000000:2"]


def test_s3_a_caught_up_token_reads_the_last_seconds_again(aws: None, clock: FakeClock) -> None:
    """A batch of another worker, stamped earlier but listed later, is not skipped: the
    token at the end of the log points before the objects of the last SETTLE_SECONDS."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    store = S3RunLogStore(s3, BUCKET, clock)
    store.append([entry("000000", 1)])
    page = store.read("ex1")
    assert messages(store.read("ex1", token=page.next_token).entries) == ["000000:1"]
    clock.advance(3)
    settled = store.read("ex1", token=page.next_token)
    assert messages(settled.entries) == ["000000:1"]
    assert store.read("ex1", token=settled.next_token).entries == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [f"logs/ex1/{int(T0 * 1000):013d}.000000.0001.00000001.jsonl"]


def test_s3_one_read_gets_at_most_max_gets_objects(aws: None, clock: FakeClock) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    store = S3RunLogStore(s3, BUCKET, clock)
    for i in range(MAX_GETS + 3):
        store.append([entry(f"{i:06d}", 1)])
        clock.advance(0.01)
    clock.advance(10)
    first = store.read("ex1", limit=1000)
    assert len(first.entries) == MAX_GETS
    rest = store.read("ex1", token=first.next_token, limit=1000)
    assert messages(rest.entries) == [f"{i:06d}:1" for i in range(MAX_GETS, MAX_GETS + 3)]
