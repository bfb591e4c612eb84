"""Workers' side of assets: fetch a bundle from the bucket, keep it in the cache (one
folder per asset id), check it against its hash every time it is used, and run its ops in a
child process (`chalicelib.ops.sandbox`), never in the worker's own interpreter.

Each bundle is imported as a package of its own, `_cadenza_asset_<id>`, whose path is the
folder that holds asset.json: modules of one asset import each other relatively
(`from . import helpers`).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from chalicelib.domain.assets import Asset, AssetLimits, sha_of
from chalicelib.ops.registry import MAX_SLICES, AnyParams, OpSource, OpSpec, SliceContext
from chalicelib.ops.sandbox import AssetUnavailable, Sandbox
from chalicelib.ports import BlobStore

BUNDLE = "bundle.zip"


def _reader(
    run: Callable[[str, dict[str, Any]], Any], target: str
) -> Callable[[Any, str | None], Iterator[dict[str, Any]]]:
    def read(p: Any, args: str | None) -> Iterator[dict[str, Any]]:
        call = {"role": "reader", "params": p.as_dict(), "args": args, "max_slices": MAX_SLICES}
        yield from run(target, call)

    return read


def _processor(
    run: Callable[[str, dict[str, Any]], Any], target: str
) -> Callable[[Any, Any, SliceContext], Any]:
    def process(p: Any, data: Any, ctx: SliceContext) -> Any:
        seen = {"ex_id": ctx.ex_id, "job_id": ctx.job_id, "order": ctx.order}
        seen.update(attempt=ctx.attempt, args=ctx.args)
        return run(target, {"role": "processor", "params": p.as_dict(), "data": data, "ctx": seen})

    return process


class AssetOpLoader(OpSource):
    """Resolves a job's asset references and gives their ops, each call of which runs in a
    child process (`Sandbox`) on a copy of the bundle checked against its hash.
    Readers are called as `fn(params: dict, args: str | None) -> iterable of dicts`,
    processors as `fn(params: dict, data, ctx) -> data`, `ctx` having the attributes of a
    `SliceContext` but `files`; what they take and give is JSON."""

    def __init__(
        self,
        resolve: Callable[[Sequence[str]], list[Asset]],
        blobs: BlobStore,
        cache_dir: str | Path,
        limits: AssetLimits,
        sandbox: Sandbox,
    ) -> None:
        self.resolve, self.blobs = resolve, blobs
        self.cache_dir, self.limits, self.sandbox = Path(cache_dir), limits, sandbox
        self._loaded: dict[str, dict[str, OpSpec]] = {}
        self._by_id: dict[str, Asset] = {}  # an id is its bundle's hash: its record never changes
        self._lock = threading.Lock()

    def _assets(self, refs: Sequence[str]) -> list[Asset]:
        with self._lock:
            known = [self._by_id.get(ref) for ref in refs]
        if all(a is not None for a in known):
            return [a for a in known if a is not None]
        return self._resolved(refs)

    def _resolved(self, refs: Sequence[str]) -> list[Asset]:
        found = self.resolve(refs)
        with self._lock:
            self._by_id.update({a.asset_id: a for a in found})
        return found

    def ops_for(self, assets: Sequence[str]) -> dict[str, OpSpec]:
        if not assets:
            return {}
        out: dict[str, OpSpec] = {}
        for asset in self._assets(assets):
            out.update(self.load(asset))
        return out

    def pin(self, assets: Sequence[str]) -> list[str]:
        """Read afresh (a run that starts after its asset was deleted fails)."""
        return [a.asset_id for a in self._resolved(assets)]

    def load(self, asset: Asset) -> dict[str, OpSpec]:
        """The asset's ops; nothing of the bundle is imported here."""
        with self._lock:
            if asset.asset_id not in self._loaded:
                self._loaded[asset.asset_id] = self._specs(asset)
            return self._loaded[asset.asset_id]

    def _specs(self, asset: Asset) -> dict[str, OpSpec]:
        def run(target: str, call: dict[str, Any]) -> Any:
            return self.sandbox.call(asset, self.bundle(asset), target, call)

        ops: dict[str, OpSpec] = {}
        manifest = asset.ops
        for name, target in manifest.readers.items():
            ops[name] = OpSpec(name, AnyParams, reader=_reader(run, target))
        for name, target in manifest.processors.items():
            spec = ops.get(name) or OpSpec(name, AnyParams)
            ops[name] = replace(spec, processor=_processor(run, target))
        return ops

    def bundle(self, asset: Asset) -> bytes:
        """The asset's zip, from the cache if the copy there matches the asset's hash (it is
        checked on every use: a tampered or half-written copy is fetched again, never run)."""
        cached = self.cache_dir / asset.asset_id / BUNDLE
        try:
            data = cached.read_bytes()
            if sha_of(data) == asset.sha:
                return data
        except OSError:
            pass
        data = self.blobs.get(asset.s3_key) or b""
        if not data:
            raise AssetUnavailable(f"asset {asset.asset_id}: bundle missing from the bucket")
        if sha_of(data) != asset.sha:
            raise AssetUnavailable(f"asset {asset.asset_id}: bundle does not match its id")
        self._keep(cached, data)
        return data

    @staticmethod
    def _keep(path: Path, data: bytes) -> None:
        """Write the copy whole or not at all (a rename), so a reader sees no half."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".bundle-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError:  # a full or read-only disk: the bundle is used from memory
            pass
