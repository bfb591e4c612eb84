"""The BlobStore contract over memory, S3 (moto) and the local stack's files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from cadenza_tools.local.blobs import FileBlobStore
from chalicelib.adapters.s3 import S3BlobStore
from chalicelib.ports import BlobStore
from tests.fakes import MemoryBlobStore


@pytest.fixture(params=["memory", "moto", "files"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "memory":
        yield MemoryBlobStore()
        return
    if request.param == "files":  # the local stack's bucket, kept on disk
        yield FileBlobStore(tmp_path)
        return
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="contract")
        yield S3BlobStore(client, "contract")


def test_put_get_overwrite_delete(blobs: BlobStore) -> None:
    assert blobs.get("a/1") is None
    blobs.put("a/1", b"one", "text/plain")
    assert blobs.get("a/1") == b"one"
    blobs.put("a/1", b"uno", "text/plain")
    assert blobs.get("a/1") == b"uno"
    blobs.delete("a/1")
    blobs.delete("a/1")  # a missing one is no error
    assert blobs.get("a/1") is None


def test_keys_under_a_prefix_in_key_order(blobs: BlobStore) -> None:
    for key in ("r/b", "r/a", "r/c/d", "s/a"):
        blobs.put(key, key.encode(), "application/octet-stream")
    assert blobs.keys("r/") == ["r/a", "r/b", "r/c/d"]
    assert blobs.keys("x/") == []
    assert blobs.keys("") == ["r/a", "r/b", "r/c/d", "s/a"]


def test_keys_that_are_also_prefixes_of_other_keys(blobs: BlobStore) -> None:
    for key in ("a/b", "a/b/c", "a/b c/%2F", "a/.."):
        blobs.put(key, key.encode(), "application/octet-stream")
    assert blobs.keys("a/") == ["a/..", "a/b", "a/b c/%2F", "a/b/c"]
    assert [blobs.get(k) for k in blobs.keys("a/")] == [k.encode() for k in blobs.keys("a/")]


def test_a_file_bucket_keeps_its_objects_for_the_next_process(tmp_path: Path) -> None:
    FileBlobStore(tmp_path).put("results/j/e/part-0", b"x,y\n", "text/csv")
    again = FileBlobStore(tmp_path)  # a restarted stack
    assert again.keys("results/") == ["results/j/e/part-0"]
    assert again.get("results/j/e/part-0") == b"x,y\n"
