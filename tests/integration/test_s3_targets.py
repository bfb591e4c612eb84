"""The s3 reader, s3_get and s3_put on moto: slices by object and by byte range (every
line read exactly once), the slice's output written one object per slice (a redelivery
overwrites it), and buckets outside the stage's allow-list refused on the slice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib.adapters.memory import MemoryQueue
from chalicelib.adapters.targets_wait import S3ObjectStore
from chalicelib.bootstrap import Container
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import ExStatus
from chalicelib.ops.clients import TargetClients, use
from chalicelib.ops.s3_data import _range_lines
from chalicelib.ops.targets import base as target_access
from chalicelib.ports import FakeClock
from tests.conftest import drain, moto_container
from tests.conftest import test_settings as make_settings

IN, OUT = "cadenza-test-in", "cadenza-test-out"


@pytest.fixture
def env(aws: None, clock: FakeClock, queue: MemoryQueue) -> Iterator[Container]:
    s3 = boto3.client("s3", region_name="us-east-1")
    for bucket in (IN, OUT, "not-allowed"):
        s3.create_bucket(Bucket=bucket)
    for c in moto_container(make_settings(), clock, queue):
        use(TargetClients(objects=S3ObjectStore(s3)))
        allow = (("s3", IN), ("s3", OUT))
        target_access.use(target_access.TargetAccess(allow, target_access.no_client))
        yield c
        use(TargetClients())
        target_access.use(None)


def _put(key: str, body: bytes, bucket: str = IN) -> None:
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=bucket, Key=key, Body=body)


def _get(key: str) -> bytes:
    s3 = boto3.client("s3", region_name="us-east-1")
    body: bytes = s3.get_object(Bucket=OUT, Key=key)["Body"].read()
    return body


def _keys(prefix: str) -> list[str]:
    s3 = boto3.client("s3", region_name="us-east-1")
    return [o["Key"] for o in s3.list_objects_v2(Bucket=OUT, Prefix=prefix).get("Contents", [])]


def _run(env: Container, queue: MemoryQueue, operations: list[dict[str, Any]]) -> Run:
    job, _ = env.jobs.submit({"name": "s3", "operations": operations, "workers": 4}, start=False)
    run = env.jobs.start_run(job.job_id)
    drain(env, queue)
    done = env.store.get_run(run.job_id, run.slot)
    assert done is not None
    return done


def test_every_line_is_read_once_across_objects_and_byte_ranges(
    env: Container, queue: MemoryQueue
) -> None:
    big = b"".join(f"line {i:05d} {'x' * (i % 37)}\n".encode() for i in range(300))
    _put("in/big.txt", big)
    _put("in/small.txt", b"one\ntwo\n")
    _put("elsewhere/skip.txt", b"not under the prefix\n")
    run = _run(
        env,
        queue,
        [
            {"_op": "s3", "bucket": IN, "prefix": "in/", "chunk_bytes": 1024},
            {"_op": "s3_get"},
            {"_op": "s3_put", "bucket": OUT, "prefix": "out/"},
        ],
    )
    assert run.status == ExStatus.completed
    chunks = -(-len(big) // 1024)
    assert run.slices_total == chunks + 1
    parts = [json.loads(_get(k)) for k in _keys(f"out/{run.ex_id}/")]
    assert len(parts) == chunks + 1
    lines = [line for p in parts if p["key"] == "in/big.txt" for line in p["lines"]]
    assert lines == big.decode().splitlines()
    assert [p["lines"] for p in parts if p["key"] == "in/small.txt"] == [["one", "two"]]
    slices = env.store.list_slices(run.ex_id)
    assert slices[0].request == {
        "bucket": IN,
        "key": "in/big.txt",
        "size": len(big),
        "range": [0, 1023],
    }
    assert slices[0].result == {
        "bucket": OUT,
        "key": f"out/{run.ex_id}/part-000000.jsonl",
        "items": 1,
        "bytes": len(_get(f"out/{run.ex_id}/part-000000.jsonl")),
    }


def test_s3_put_writes_csv_one_object_per_slice(env: Container, queue: MemoryQueue) -> None:
    run = _run(
        env,
        queue,
        [
            {"_op": "range", "end": 3},
            {"_op": "s3_put", "bucket": OUT, "prefix": "csv/", "format": "csv"},
        ],
    )
    assert run.status == ExStatus.completed
    keys = _keys(f"csv/{run.ex_id}/")
    assert keys == [f"csv/{run.ex_id}/part-{i:06d}.csv" for i in range(3)]
    assert _get(keys[1]) == b"start,end\r\n1,2\r\n"


def test_a_bucket_outside_the_allow_list_fails_the_run_clearly(
    env: Container, queue: MemoryQueue
) -> None:
    _put("in/a.txt", b"a\n", bucket="not-allowed")
    run = _run(env, queue, [{"_op": "s3", "bucket": "not-allowed"}, {"_op": "s3_get"}])
    assert run.status == ExStatus.failed
    assert "s3 target 'not-allowed' is not allowed in this stage" in str(run.errors)
    run = _run(env, queue, [{"_op": "noop"}, {"_op": "s3_put", "bucket": "not-allowed"}])
    assert run.status == ExStatus.failed
    assert "CADENZA_TARGETS_ALLOW" in str(run.errors)


def test_s3_get_gives_text_json_lines_or_bytes(env: Container, queue: MemoryQueue) -> None:
    _put("fmt/a.jsonl", b'{"n": 1}\n\n{"n": 2}\n')
    got = {}
    for fmt in ("text", "json_lines", "base64"):
        run = _run(
            env,
            queue,
            [{"_op": "s3", "bucket": IN, "prefix": "fmt/"}, {"_op": "s3_get", "format": fmt}],
        )
        assert run.status == ExStatus.completed
        got[fmt] = run.result[fmt]
    assert got == {
        "text": '{"n": 1}\n\n{"n": 2}\n',
        "json_lines": [{"n": 1}, {"n": 2}],
        "base64": "eyJuIjogMX0KCnsibiI6IDJ9Cg==",
    }


@pytest.mark.parametrize("size", [1, 7, 10, 64])
def test_range_lines_split_at_any_size_keeps_each_line_once(size: int) -> None:
    data = b"a\nbb\n\nccc\ndddd\ne"
    get = lambda a, b: data[a : b + 1]  # noqa: E731
    got = b"".join(
        _range_lines(get, len(data), first, min(first + size, len(data)) - 1)
        for first in range(0, len(data), size)
    )
    assert got == data
