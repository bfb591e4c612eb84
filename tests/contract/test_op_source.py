"""The OpSource contract: the loader of real bundles over the in-memory blob and asset
stores and over moto (S3 and DynamoDB), and the static fake."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.dynamodb.assets import DynamoAssetStore
from chalicelib.adapters.s3 import S3BlobStore
from chalicelib.bootstrap import asset_limits, asset_sandbox
from chalicelib.domain.assets import inspect_bundle
from chalicelib.domain.errors import InvalidInput
from chalicelib.ops.assets import AssetOpLoader
from chalicelib.ops.registry import REGISTRY, AnyParams, OpSource, OpSpec, SliceContext
from chalicelib.ports import AssetStore, BlobStore, FakeClock
from chalicelib.services.assets import AssetService
from tests.conftest import test_settings as make_settings
from tests.contract.bundles import IO_PY, bundle
from tests.contract.records import T
from tests.fakes import MemoryAssetStore, MemoryBlobStore, StaticOpSource
from tests.fakes.ops import FakeAsset


@dataclass
class Source:
    """An OpSource and how to upload a bundle to it (returns the asset id)."""

    ops: OpSource
    upload: Callable[[bytes], str]


def _loader(store: AssetStore, blobs: BlobStore, cache: Path) -> Source:
    settings = make_settings(asset_cache_dir=str(cache))
    limits = asset_limits(settings)
    clock = FakeClock(T)
    service = AssetService(store, blobs, clock, limits, frozenset(REGISTRY))

    def upload(data: bytes) -> str:
        clock.advance(1)
        return service.upload(data)[0].asset_id

    loader = AssetOpLoader(service.resolve, blobs, cache, limits, asset_sandbox(settings))
    return Source(loader, upload)


def _static() -> Source:
    source = StaticOpSource()
    clock = FakeClock(T)

    def upload(data: bytes) -> str:
        info = inspect_bundle(data, asset_limits(make_settings()), frozenset(REGISTRY))
        scope: dict[str, Any] = {}
        exec(IO_PY, scope)  # the bundle's module, without a package
        reader, processor = scope["numbers"], scope["double"]
        ops = {
            "numbers": OpSpec("numbers", AnyParams, reader=lambda p, a: reader(p.as_dict(), a)),
            "double": OpSpec(
                "double", AnyParams, processor=lambda p, d, c: processor(p.as_dict(), d, c)
            ),
        }
        clock.advance(1)
        m = info.manifest
        source.add(FakeAsset(info.asset_id, m.name, m.version, clock.now(), ops))
        return info.asset_id

    return Source(source, upload)


@pytest.fixture(params=["memory", "moto", "static"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Source]:
    cache = tmp_path / uuid.uuid4().hex
    if request.param == "memory":
        yield _loader(MemoryAssetStore(), MemoryBlobStore(), cache)
    elif request.param == "static":
        yield _static()
    else:
        with mock_aws():
            settings = make_settings()
            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket=settings.bucket)
            store = DynamoAssetStore(settings)
            store.ensure_table()
            yield _loader(store, S3BlobStore(client, settings.bucket), cache)


def test_no_assets_no_ops(source: Source) -> None:
    assert source.ops.ops_for([]) == {}
    assert source.ops.pin([]) == []


def test_pins_name_the_newest_upload_or_the_version(source: Source) -> None:
    salt = f"\n# {uuid.uuid4().hex}\n"  # a fresh package name for each run of the loader
    v1 = source.upload(bundle(version="1.0.0", salt=salt))
    v2 = source.upload(bundle(version="1.1.0", salt=salt))
    assert source.ops.pin(["nums"]) == [v2]
    assert source.ops.pin(["nums:1.0.0", v2]) == [v1, v2]
    assert source.ops.pin([v1]) == [v1]
    with pytest.raises(InvalidInput):
        source.ops.pin(["nums", "missing"])


def test_ops_of_an_asset_run(source: Source) -> None:
    ref = source.upload(bundle(salt=f"\n# {uuid.uuid4().hex}\n"))
    ops = source.ops.ops_for([ref])
    assert set(ops) == {"numbers", "double"}
    reader, processor = ops["numbers"].reader, ops["double"].processor
    assert reader is not None and processor is not None
    params = AnyParams.model_validate({"count": 3})
    assert list(reader(params, None)) == [{"n": 0}, {"n": 1}, {"n": 2}]
    ctx = SliceContext(ex_id="e", job_id="j", order=0, attempt=1, args=None)
    assert processor(AnyParams(), {"n": 4}, ctx) == {"n": 8}
    with pytest.raises(InvalidInput):
        source.ops.ops_for(["missing"])
