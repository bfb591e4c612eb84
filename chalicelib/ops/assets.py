"""Workers' side of assets: fetch a bundle from the bucket once per process (cached by id
under the cache folder), extract it with the upload's checks, import its ops.

Each bundle becomes a package of its own, `_cadenza_asset_<id>`, whose path is the folder
that holds asset.json: two assets may have modules of the same name, and modules of one
asset import each other relatively (`from . import helpers`).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from chalicelib.domain.assets import (
    Asset,
    AssetLimits,
    checked_members,
    read_members,
    sha_of,
)
from chalicelib.ops.registry import AnyParams, OpSource, OpSpec, SliceContext
from chalicelib.ports import BlobStore

COMPLETE = ".complete"


class AssetUnavailable(RuntimeError):
    """A job's asset cannot be loaded: its bundle is gone, altered or broken."""


def _reader(fn: Callable[..., Any]) -> Callable[[Any, str | None], Iterator[dict[str, Any]]]:
    def read(p: Any, args: str | None) -> Iterator[dict[str, Any]]:
        yield from fn(p.as_dict(), args)

    return read


def _processor(fn: Callable[..., Any]) -> Callable[[Any, Any, SliceContext], Any]:
    def run(p: Any, data: Any, ctx: SliceContext) -> Any:
        return fn(p.as_dict(), data, ctx)

    return run


class AssetOpLoader(OpSource):
    """Resolves a job's asset references and loads their ops, once per asset and process.
    Readers are called as `fn(params: dict, args: str | None) -> iterable of dicts`,
    processors as `fn(params: dict, data, ctx: SliceContext) -> data`."""

    def __init__(
        self,
        resolve: Callable[[Sequence[str]], list[Asset]],
        blobs: BlobStore,
        cache_dir: str | Path,
        limits: AssetLimits,
    ) -> None:
        self.resolve, self.blobs = resolve, blobs
        self.cache_dir, self.limits = Path(cache_dir), limits
        self._loaded: dict[str, dict[str, OpSpec]] = {}
        self._by_id: dict[str, Asset] = {}  # an id is its bundle's hash: its record never changes
        self._lock = threading.Lock()

    def _assets(self, refs: Sequence[str]) -> list[Asset]:
        with self._lock:
            known = [self._by_id.get(ref) for ref in refs]
        if all(a is not None for a in known):
            return [a for a in known if a is not None]
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
        return [a.asset_id for a in self._assets(assets)]

    def load(self, asset: Asset) -> dict[str, OpSpec]:
        with self._lock:
            if asset.asset_id not in self._loaded:
                self._loaded[asset.asset_id] = self._import(asset, self._extracted(asset))
            return self._loaded[asset.asset_id]

    def _extracted(self, asset: Asset) -> Path:
        """The folder holding the bundle's asset.json, extracted once per id."""
        dest = self.cache_dir / asset.asset_id
        if not (dest / COMPLETE).exists():
            data = self.blobs.get(asset.s3_key)
            if data is None:
                raise AssetUnavailable(f"asset {asset.asset_id}: bundle missing from the bucket")
            if sha_of(data) != asset.sha:
                raise AssetUnavailable(f"asset {asset.asset_id}: bundle does not match its id")
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=f".{asset.asset_id}-"))
            try:
                self._extract(data, tmp)
                (tmp / COMPLETE).touch()
                if dest.exists():  # an earlier, interrupted extraction
                    shutil.rmtree(dest, ignore_errors=True)
                os.rename(tmp, dest)
            except OSError:
                if not (dest / COMPLETE).exists():
                    raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return dest / asset.root

    def _extract(self, data: bytes, into: Path) -> None:
        base = into.resolve()
        zf, _ = checked_members(data, self.limits)
        with zf:
            for info, chunks in read_members(zf, len(data), self.limits):
                target = (base / info.filename).resolve()
                if not target.is_relative_to(base):
                    raise AssetUnavailable(f"entry {info.filename!r} escapes the bundle")
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as fh:
                    for chunk in chunks:
                        fh.write(chunk)

    def _import(self, asset: Asset, folder: Path) -> dict[str, OpSpec]:
        package = f"_cadenza_asset_{asset.asset_id}"
        if package not in sys.modules:
            module = types.ModuleType(package)
            module.__path__ = [str(folder)]
            sys.modules[package] = module
        ops: dict[str, OpSpec] = {}
        manifest = asset.ops
        for role, table in (("reader", manifest.readers), ("processor", manifest.processors)):
            for name, target in table.items():
                module_name, fn_name = target.split(":", 1)
                try:
                    fn = getattr(importlib.import_module(f"{package}.{module_name}"), fn_name)
                except Exception as err:
                    raise AssetUnavailable(
                        f"asset {asset.name} {asset.version}: cannot load {name} ({target}): "
                        f"{type(err).__name__}: {err}"
                    ) from err
                spec = ops.get(name) or OpSpec(name, AnyParams)
                if role == "reader":
                    ops[name] = replace(spec, reader=_reader(fn))
                else:
                    ops[name] = replace(spec, processor=_processor(fn))
        return ops
