"""The AssetStore contract over memory, moto and DynamoDB Local."""

from __future__ import annotations

import pytest

from chalicelib.adapters.dynamodb.assets import DynamoAssetStore
from chalicelib.config import Settings
from chalicelib.domain.assets import Asset
from chalicelib.domain.errors import Conflict
from chalicelib.ports import AssetStore
from tests.contract.records import T
from tests.fakes import MemoryAssetStore
from tests.typed import field_errors


@pytest.fixture
def assets(store_kind: tuple[str, Settings]) -> AssetStore:
    kind, settings = store_kind
    if kind == "memory":
        return MemoryAssetStore()
    s = DynamoAssetStore(settings)
    s.ensure_table()
    return s


def _asset(n: int, name: str = "nums", version: str | None = None) -> Asset:
    asset_id = f"{n:040x}"
    return Asset(
        asset_id=asset_id,
        name=name,
        version=version or f"1.0.{n}",
        sha="0" * 64,
        size=10,
        s3_key=f"assets/{asset_id}.zip",
        created=T + n,
        manifest={"name": name, "version": version or f"1.0.{n}"},
    )


def test_an_asset_is_put_once_and_its_version_claimed(assets: AssetStore) -> None:
    a = _asset(1)
    assert assets.put_asset(a)
    assert not assets.put_asset(a)  # same bytes again
    assert assets.get_asset(a.asset_id) == a
    with pytest.raises(Conflict):
        assets.put_asset(_asset(2, version=a.version))  # other bytes, same name and version
    assert assets.get_asset(_asset(2).asset_id) is None
    assert assets.get_asset("nums@1.0.1") is None  # a claim is not an asset


def test_assets_by_name_newest_first_and_listed_by_creation(assets: AssetStore) -> None:
    made = [_asset(i) for i in range(1, 4)] + [_asset(9, name="other")]
    for a in made:
        assert assets.put_asset(a)
    assert [a.asset_id for a in assets.assets_named("nums")] == [
        made[2].asset_id,
        made[1].asset_id,
        made[0].asset_id,
    ]
    assert assets.assets_named("nums", "1.0.2") == [made[1]]
    assert assets.assets_named("none") == []
    assert [a.asset_id for a in assets.list_assets(2)] == [made[3].asset_id, made[2].asset_id]
    assert assets.list_assets(1, newest_first=False) == [made[0]]


def test_a_deleted_name_and_version_is_never_reused(assets: AssetStore) -> None:
    a = _asset(1)
    assets.put_asset(a)
    assert assets.delete_asset(a, T + 5)
    assert not assets.delete_asset(a, T + 6)
    assert assets.get_asset(a.asset_id) is None and assets.assets_named("nums") == []
    for again in (a, _asset(2, version=a.version)):  # the same bytes, or others
        with pytest.raises(Conflict) as err:
            assets.put_asset(again)
        assert "deleted asset" in err.value.message and a.asset_id in err.value.message
        [error] = field_errors(err.value)
        assert error["field"] == "asset.json.version" and "never reusable" in error["reason"]
    assert assets.get_asset(_asset(2).asset_id) is None
    assert assets.put_asset(_asset(3))  # another version of the name is fine
