"""Asset use cases: upload a bundle, list and find assets, delete one, resolve a job's refs."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from chalicelib.domain.assets import (
    ASSET_ID,
    Asset,
    AssetLimits,
    PinnedAssets,
    inspect_bundle,
    parse_ref,
    refuse,
)
from chalicelib.domain.errors import NotFound
from chalicelib.ports import AssetStore, BlobStore, Clock

log = logging.getLogger(__name__)
MAX_WINDOW = 10_000  # from + size, as Elasticsearch (Teraslice's store) allows
SORTS = {"_created:desc": True, "_created:asc": False, "_created": True}


def bundle_key(asset_id: str) -> str:
    return f"assets/{asset_id}.zip"


class AssetService:
    """Bundles in the bucket, their records in the assets table; the record is the truth
    (an asset exists once its record does), written after the bundle and removed first."""

    def __init__(
        self,
        store: AssetStore,
        blobs: BlobStore,
        clock: Clock,
        limits: AssetLimits,
        builtin_ops: frozenset[str],
    ) -> None:
        self.store, self.blobs, self.clock = store, blobs, clock
        self.limits, self.builtin_ops = limits, builtin_ops

    def upload(self, data: bytes) -> tuple[Asset, bool]:
        """Check the zip completely, then store it; nothing is written for a refused one.
        The same bytes again give the same asset (False: it existed)."""
        bundle = inspect_bundle(data, self.limits, self.builtin_ops)
        existing = self.store.get_asset(bundle.asset_id)
        if existing is not None:
            return existing, False
        asset = Asset(
            asset_id=bundle.asset_id,
            name=bundle.manifest.name,
            version=bundle.manifest.version,
            sha=bundle.sha,
            size=bundle.size,
            s3_key=bundle_key(bundle.asset_id),
            created=self.clock.now(),
            root=bundle.root,
            manifest=bundle.manifest.model_dump(mode="json"),
        )
        self.blobs.put(asset.s3_key, data, "application/zip")
        try:
            created = self.store.put_asset(asset)
        except Exception:
            self._drop_orphan(asset)
            raise
        if not created:  # a concurrent upload of the same bytes won; its object is ours
            stored = self.store.get_asset(asset.asset_id)
            return (stored or asset), False
        return asset, True

    def _drop_orphan(self, asset: Asset) -> None:
        try:
            if self.store.get_asset(asset.asset_id) is None:
                self.blobs.delete(asset.s3_key)
        except Exception:
            log.exception("could not remove the bundle of refused asset %s", asset.asset_id)

    def listing(self, start: int, size: int, sort: str | None) -> list[Asset]:
        """Teraslice's GET /assets: `size` assets from position `start`, by `_created`."""
        key = sort or "_created:desc"
        if key not in SORTS:
            raise refuse("sort", f"expected _created:desc or _created:asc, got {key!r}")
        if start + size > MAX_WINDOW:
            raise refuse("size", f"from + size must be at most {MAX_WINDOW}")
        if size == 0:
            return []
        return self.store.list_assets(start + size, newest_first=SORTS[key])[start:]

    def named(self, name: str, version: str | None = None) -> list[Asset]:
        """The assets of a name (or the one with this id), newest first."""
        if ASSET_ID.match(name) and version is None:
            found = self.store.get_asset(name)
            if found is not None:
                return [found]
        return self.store.assets_named(name, version)

    def get(self, asset_id: str) -> Asset:
        asset = self.store.get_asset(asset_id)
        if asset is None:
            raise NotFound(f"asset {asset_id} not found", asset_id=asset_id)
        return asset

    def delete(self, asset_id: str) -> Asset:
        """Remove the record, then the bundle; its name and version stay claimed (a
        tombstone), so no other bundle is ever uploaded under them. Jobs pinning it fail
        validation from now on and their runs fail with "unknown asset"."""
        asset = self.get(asset_id)
        if not self.store.delete_asset(asset, self.clock.now()):
            raise NotFound(f"asset {asset_id} not found", asset_id=asset_id)
        self.blobs.delete(asset.s3_key)
        return asset

    def resolve(self, refs: Sequence[str]) -> list[Asset]:
        """The assets a job names (ids, `name`: the newest upload, `name:version`);
        InvalidInput naming the first unknown one."""
        out: list[Asset] = []
        for i, ref in enumerate(refs):
            found: Asset | None = None
            if ASSET_ID.match(ref):
                found = self.store.get_asset(ref)
            if found is None:
                name, version = parse_ref(ref)
                named = self.store.assets_named(name, version) if name else []
                found = named[0] if named else None
            if found is None:
                raise refuse(f"assets[{i}]", f"unknown asset {ref!r}")
            out.append(found)
        return out

    def pin(self, refs: Sequence[str]) -> PinnedAssets:
        """The ids a job's references name now (a name: its newest upload), which the job
        keeps, and each op those assets provide with its roles; two assets providing the
        same op name is refused."""
        assets = self.resolve(refs)
        out: dict[str, frozenset[str]] = {}
        owner: dict[str, str] = {}
        for i, asset in enumerate(assets):
            for op, roles in asset.ops.roles().items():
                if op in owner and owner[op] != asset.asset_id:
                    raise refuse(
                        f"assets[{i}]",
                        f"op {op!r} is provided by two assets ({owner[op]}, {asset.asset_id})",
                    )
                owner[op] = asset.asset_id
                out[op] = roles
        return PinnedAssets([a.asset_id for a in assets], out)
