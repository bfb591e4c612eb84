"""The BlobStore contract over memory and S3 (moto)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.s3 import S3BlobStore
from chalicelib.ports import BlobStore
from tests.fakes import MemoryBlobStore


@pytest.fixture(params=["memory", "moto"])
def blobs(request: pytest.FixtureRequest) -> Iterator[BlobStore]:
    if request.param == "memory":
        yield MemoryBlobStore()
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
