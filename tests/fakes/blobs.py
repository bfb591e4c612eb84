"""In-memory BlobStore and AssetStore, honouring the contracts of S3BlobStore and
DynamoAssetStore."""

from __future__ import annotations

import copy
import threading

from chalicelib.domain.assets import Asset, claim_key, version_taken
from chalicelib.ports import AssetStore, BlobStore


class MemoryBlobStore(BlobStore):
    """Objects by key, as a bucket holds them."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, content_type: str) -> None:
        with self._lock:
            self.objects[key] = (bytes(data), content_type)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            found = self.objects.get(key)
        return None if found is None else found[0]

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)

    def keys(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(k for k in self.objects if k.startswith(prefix))


class MemoryAssetStore(AssetStore):
    """Asset records and their name/version claims, written together under one lock."""

    def __init__(self) -> None:
        self.assets: dict[str, Asset] = {}
        self.claims: dict[str, str] = {}  # name@version -> asset id
        self.tombstones: set[str] = set()  # claims of deleted assets, kept forever
        self._lock = threading.Lock()

    def ensure_table(self) -> None:
        """Nothing to create."""

    def put_asset(self, asset: Asset) -> bool:
        claim = claim_key(asset.name, asset.version)
        with self._lock:
            if asset.asset_id in self.assets:
                return False
            holder = self.claims.get(claim)
            if holder is None:
                self.assets[asset.asset_id] = copy.deepcopy(asset)
                self.claims[claim] = asset.asset_id
                return True
            deleted = claim in self.tombstones
        raise version_taken(asset.name, asset.version, holder, deleted)

    def get_asset(self, asset_id: str) -> Asset | None:
        with self._lock:
            return copy.deepcopy(self.assets.get(asset_id))

    def assets_named(self, name: str, version: str | None = None) -> list[Asset]:
        with self._lock:
            found = [
                a
                for a in self.assets.values()
                if a.name == name and (version is None or a.version == version)
            ]
            return copy.deepcopy(sorted(found, key=lambda a: a.created, reverse=True))

    def list_assets(self, limit: int, newest_first: bool = True) -> list[Asset]:
        with self._lock:
            found = sorted(
                self.assets.values(), key=lambda a: (a.created, a.asset_id), reverse=newest_first
            )
            return copy.deepcopy(found[:limit])

    def delete_asset(self, asset: Asset, when: float) -> bool:
        claim = claim_key(asset.name, asset.version)
        with self._lock:
            if asset.asset_id not in self.assets or self.claims.get(claim) != asset.asset_id:
                return False
            del self.assets[asset.asset_id]
            self.tombstones.add(claim)
            return True
