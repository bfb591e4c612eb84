"""The AssetStore port on DynamoDB: asset records and their name/version claims."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pynamodb.exceptions import (
    DeleteError,
    GetError,
    PynamoDBException,
    QueryError,
    TransactWriteError,
)
from pynamodb.transactions import TransactWrite

from chalicelib.adapters.dynamodb._tx import _cancel_codes, _unavailable
from chalicelib.adapters.dynamodb.models import AssetModel, Models, build_models
from chalicelib.config import Settings
from chalicelib.domain.assets import Asset, claim_key, version_taken
from chalicelib.ports import AssetStore

LIST_KEY = "asset"
T = TypeVar("T")


class DynamoAssetStore(AssetStore):
    """Assets in their own table; listing and look-up by name are index queries."""

    def __init__(self, settings: Settings, models: Models | None = None) -> None:
        self.m = models or build_models(settings)

    def ensure_table(self) -> None:
        if not self.m.asset.exists():
            self.m.asset.create_table(wait=True, billing_mode="PAY_PER_REQUEST")

    @staticmethod
    def _asset(m: AssetModel) -> Asset:
        return Asset(
            asset_id=m.asset_id,
            name=m.name,
            version=m.version,
            sha=m.sha,
            size=int(m.size),
            s3_key=m.s3_key,
            created=float(m.created),
            root=m.root or "",
            manifest=dict(m.manifest or {}),
        )

    def put_asset(self, asset: Asset) -> bool:
        A = self.m.asset
        record = A(
            asset.asset_id,
            name=asset.name,
            version=asset.version,
            sha=asset.sha,
            size=asset.size,
            s3_key=asset.s3_key,
            root=asset.root,
            manifest=asset.manifest,
            list_key=LIST_KEY,
            created=asset.created,
        )
        claim = A(claim_key(asset.name, asset.version), target=asset.asset_id)
        try:
            with TransactWrite(connection=self.m.connection) as tx:
                tx.save(record, condition=A.asset_id.does_not_exist())
                tx.save(claim, condition=A.asset_id.does_not_exist())
            return True
        except TransactWriteError as err:
            codes = _cancel_codes(err)
            if "ConditionalCheckFailed" not in codes:
                raise _unavailable(err) from err
        if self.get_asset(asset.asset_id) is not None:
            return False
        held = self._get(lambda: A.get(claim_key(asset.name, asset.version)))
        holder = None if held is None else held.target
        deleted = held is not None and held.deleted is not None
        raise version_taken(asset.name, asset.version, holder, deleted)

    def _get(self, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except self.m.asset.DoesNotExist:
            return None
        except (GetError, QueryError) as err:
            raise _unavailable(err) from err

    def get_asset(self, asset_id: str) -> Asset | None:
        m = self._get(lambda: self.m.asset.get(asset_id, consistent_read=True))
        if m is None or m.list_key != LIST_KEY:
            return None
        return self._asset(m)

    def assets_named(self, name: str, version: str | None = None) -> list[Asset]:
        A = self.m.asset
        condition = None if version is None else A.version == version
        found = self._get(lambda: [self._asset(m) for m in A.name_index.query(name, condition)])
        return sorted(found or [], key=lambda a: a.created, reverse=True)

    def list_assets(self, limit: int, newest_first: bool = True) -> list[Asset]:
        A = self.m.asset
        found = self._get(
            lambda: [
                self._asset(m)
                for m in A.list_index.query(
                    LIST_KEY, scan_index_forward=not newest_first, limit=limit
                )
            ]
        )
        return found or []

    def delete_asset(self, asset: Asset, when: float) -> bool:
        A = self.m.asset
        try:
            with TransactWrite(connection=self.m.connection) as tx:
                tx.delete(A(asset.asset_id), condition=A.asset_id.exists())
                tx.update(
                    A(claim_key(asset.name, asset.version)),
                    actions=[A.deleted.set(when)],
                    condition=(A.target == asset.asset_id) & A.deleted.does_not_exist(),
                )
            return True
        except TransactWriteError as err:
            if "ConditionalCheckFailed" in _cancel_codes(err):
                return False
            raise _unavailable(err) from err
        except (DeleteError, PynamoDBException) as err:
            raise _unavailable(err) from err
