"""An in-memory OpSource: assets given with their ops, no bundle to fetch or import.

The OpSource on real bundles, `AssetOpLoader`, needs no fake: over MemoryBlobStore and an
AssetService on MemoryAssetStore it runs in memory (tests/contract/test_op_source.py)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from chalicelib.domain.assets import ASSET_ID, parse_ref, refuse
from chalicelib.ops.registry import OpSource, OpSpec


@dataclass(frozen=True)
class FakeAsset:
    asset_id: str
    name: str
    version: str
    created: float
    ops: dict[str, OpSpec]


class StaticOpSource(OpSource):
    """Resolves references as AssetService.resolve does (an id, `name`: the newest,
    `name:version`; InvalidInput naming the first unknown one) over assets added in
    memory."""

    def __init__(self, assets: Sequence[FakeAsset] = ()) -> None:
        self.assets = list(assets)
        self._lock = threading.Lock()

    def add(self, asset: FakeAsset) -> None:
        with self._lock:
            self.assets.append(asset)

    def _find(self, ref: str) -> FakeAsset | None:
        if ASSET_ID.match(ref):
            found = [a for a in self.assets if a.asset_id == ref]
            if found:
                return found[0]
        name, version = parse_ref(ref)
        named = [
            a for a in self.assets if a.name == name and (version is None or a.version == version)
        ]
        return max(named, key=lambda a: a.created, default=None)

    def _resolve(self, refs: Sequence[str]) -> list[FakeAsset]:
        out: list[FakeAsset] = []
        with self._lock:
            for i, ref in enumerate(refs):
                found = self._find(ref)
                if found is None:
                    raise refuse(f"assets[{i}]", f"unknown asset {ref!r}")
                out.append(found)
        return out

    def ops_for(self, assets: Sequence[str]) -> dict[str, OpSpec]:
        out: dict[str, OpSpec] = {}
        for asset in self._resolve(assets):
            out.update(asset.ops)
        return out

    def pin(self, assets: Sequence[str]) -> list[str]:
        return [a.asset_id for a in self._resolve(assets)]
