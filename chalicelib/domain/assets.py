"""Assets: zip bundles of operations. Checking a bundle (limits, paths, asset.json) is pure.

A bundle holds `asset.json` at its root or inside one enclosing folder (the two forms
`zip -r bundle.zip asset` and `zip -r bundle.zip asset.json ops/` produce):

    {"name": "my-asset", "version": "1.0.0",
     "ops": {"processors": {"double": "mathops:double"}, "readers": {"ids": "mathops:ids"}}}

Each op maps to `module:function`, a module of the bundle (relative to asset.json).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chalicelib.domain.errors import Conflict, InvalidInput

MANIFEST = "asset.json"
ASSET_ID = re.compile(r"^[0-9a-f]{40}$")
OP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
CHUNK = 64 * 1024
Role = Literal["reader", "processor"]


class TooLarge(InvalidInput):
    """A bundle over a size limit (compressed, uncompressed, entries or ratio)."""

    status_code = 413
    code = "too_large"


def refuse(field_name: str, reason: str, *, too_large: bool = False) -> InvalidInput:
    errors = [{"field": field_name, "reason": reason}]
    cls = TooLarge if too_large else InvalidInput
    return cls(f"{field_name}: {reason}", errors)


@dataclass(frozen=True)
class AssetLimits:
    """What a bundle may weigh. The ratio applies once the content is over `ratio_floor`
    (a few KB of repeated text compress far better than any ratio worth refusing)."""

    max_bytes: int = 4 * 1024 * 1024
    max_uncompressed: int = 50 * 1024 * 1024
    max_ratio: float = 100.0
    ratio_floor: int = 1024 * 1024
    max_entries: int = 1000


class AssetOps(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    readers: dict[str, str] = Field(default_factory=dict, max_length=100)
    processors: dict[str, str] = Field(default_factory=dict, max_length=100)

    @field_validator("readers", "processors")
    @classmethod
    def _targets(cls, v: dict[str, str]) -> dict[str, str]:
        for name, target in v.items():
            if not OP_NAME.match(name):
                raise ValueError(f"op name {name!r}: letters, digits, _ . - (a letter first)")
            if not TARGET.match(target):
                raise ValueError(f"op {name!r}: expected 'module:function', got {target!r}")
        return v

    def roles(self) -> dict[str, frozenset[str]]:
        """Each op name and what it can be used as."""
        out: dict[str, set[str]] = {}
        for name in self.readers:
            out.setdefault(name, set()).add("reader")
        for name in self.processors:
            out.setdefault(name, set()).add("processor")
        return {k: frozenset(v) for k, v in out.items()}


class Manifest(BaseModel):
    """asset.json. Other fields (description, ...) are kept as they are."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    version: str = Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")
    ops: AssetOps = Field(default_factory=AssetOps)


@dataclass
class Asset:
    """A stored bundle: its id is the sha1 of the zip's bytes (Teraslice's 40-hex ids),
    `sha` its sha256, which workers check the bundle they fetch against."""

    asset_id: str
    name: str
    version: str
    sha: str
    size: int
    s3_key: str
    created: float
    root: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def ops(self) -> AssetOps:
        return Manifest.model_validate(self.manifest).ops


@dataclass(frozen=True)
class PinnedAssets:
    """A job's asset references as the ids they name when it is submitted or updated, and
    the ops those assets provide with their roles (reader / processor)."""

    ids: list[str]
    roles: dict[str, frozenset[str]]


@dataclass(frozen=True)
class Bundle:
    """A checked bundle: what to store."""

    asset_id: str
    sha: str
    manifest: Manifest
    root: str
    size: int
    uncompressed: int


def asset_id_of(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def sha_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _member_path(info: zipfile.ZipInfo) -> str:
    """The member's name, refused if it could land outside the folder it is extracted to."""
    name = info.filename
    if "\\" in name or "\x00" in name:
        raise refuse("body", f"entry {name!r}: backslashes and NUL are not allowed in paths")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise refuse("body", f"entry {name!r}: absolute path (path traversal)")
    if any(part == ".." for part in name.split("/")):
        raise refuse("body", f"entry {name!r}: '..' in path (path traversal)")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise refuse("body", f"entry {name!r}: symbolic links are not allowed")
    if info.flag_bits & 0x1:
        raise refuse("body", f"entry {name!r}: encrypted entries are not supported")
    return name


def _open(data: bytes, limits: AssetLimits) -> zipfile.ZipFile:
    if len(data) == 0:
        raise refuse("body", "empty body; send the zip as application/octet-stream")
    if len(data) > limits.max_bytes:
        raise refuse(
            "body", f"{len(data)} bytes, over the limit of {limits.max_bytes}", too_large=True
        )
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as err:
        raise refuse("body", f"not a zip archive ({err})") from err


def checked_members(data: bytes, limits: AssetLimits) -> tuple[zipfile.ZipFile, list[str]]:
    """The open archive and its members' names, after every check the headers allow:
    entry count, declared sizes and ratio, and paths (no traversal, no links)."""
    zf = _open(data, limits)
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise refuse(
            "body", f"{len(infos)} entries, over the limit of {limits.max_entries}", too_large=True
        )
    names = [_member_path(i) for i in infos]
    if len(set(names)) != len(names):
        raise refuse("body", "duplicate entry names")
    declared = sum(i.file_size for i in infos)
    _check_total(declared, len(data), limits, "declared")
    return zf, names


def _check_total(total: int, compressed: int, limits: AssetLimits, how: str) -> None:
    if total > limits.max_uncompressed:
        raise refuse(
            "body",
            f"zip bomb: {how} uncompressed size {total} bytes is over the limit of "
            f"{limits.max_uncompressed}",
            too_large=True,
        )
    if total > limits.ratio_floor and total > limits.max_ratio * max(compressed, 1):
        raise refuse(
            "body",
            f"zip bomb: {how} compression ratio {total / max(compressed, 1):.0f} is over the "
            f"limit of {limits.max_ratio:.0f}",
            too_large=True,
        )


def read_members(
    zf: zipfile.ZipFile, compressed: int, limits: AssetLimits
) -> Iterator[tuple[zipfile.ZipInfo, Iterator[bytes]]]:
    """Each file member with its content in chunks, counting what is really inflated: a
    member that inflates past its declared size, or a total past the limits, stops the read
    (headers can lie)."""
    total = 0
    for info in zf.infolist():
        if info.is_dir():
            continue

        def chunks(info: zipfile.ZipInfo = info) -> Iterator[bytes]:
            nonlocal total
            seen = 0
            try:
                with zf.open(info) as fh:
                    while chunk := fh.read(CHUNK):
                        seen += len(chunk)
                        total += len(chunk)
                        if seen > info.file_size:
                            raise refuse(
                                "body",
                                f"zip bomb: entry {info.filename!r} inflates past its "
                                f"declared size {info.file_size}",
                                too_large=True,
                            )
                        _check_total(total, compressed, limits, "inflated")
                        yield chunk
            except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
                raise refuse("body", f"entry {info.filename!r} is corrupt ({err})") from err

        yield info, chunks()


def _root(names: list[str]) -> str:
    """The folder asset.json is in: "" (the root) or one enclosing folder holding it all."""
    if MANIFEST in names:
        return ""
    found = [n for n in names if n.count("/") == 1 and n.endswith("/" + MANIFEST)]
    if len(found) != 1:
        where = "several folders" if found else "the zip"
        raise refuse(
            "asset.json",
            f"missing: {where} must hold asset.json at its root or in one enclosing folder",
        )
    root = found[0][: -len(MANIFEST)]
    if any(not n.startswith(root) for n in names):
        raise refuse("asset.json", f"not at the root, and not every entry is inside {root!r}")
    return root


def parse_manifest(raw: bytes) -> Manifest:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise refuse("asset.json", f"not valid JSON ({err})") from err
    if not isinstance(body, dict):
        raise refuse("asset.json", "expected a JSON object with name and version")
    try:
        return Manifest.model_validate(body)
    except ValidationError as err:
        errors = [
            {
                "field": ".".join(["asset.json", *map(str, e["loc"])]),
                "reason": e["msg"].removeprefix("Value error, "),
            }
            for e in err.errors()
        ]
        raise InvalidInput(f"{errors[0]['field']}: {errors[0]['reason']}", errors) from err


def _module_files(target: str, root: str) -> tuple[str, str]:
    module = target.split(":", 1)[0].replace(".", "/")
    return f"{root}{module}.py", f"{root}{module}/__init__.py"


def inspect_bundle(data: bytes, limits: AssetLimits, builtin_ops: frozenset[str]) -> Bundle:
    """Check an uploaded zip completely (every member is inflated, within the limits) and
    read its asset.json; InvalidInput (TooLarge for sizes) naming what is wrong."""
    zf, names = checked_members(data, limits)
    with zf:
        root = _root(names)
        manifest_raw = b""
        total = 0
        for info, chunks in read_members(zf, len(data), limits):
            content = b"".join(chunks)
            total += len(content)
            if info.filename == root + MANIFEST:
                manifest_raw = content
    manifest = parse_manifest(manifest_raw)
    files = set(names)
    for role, ops in (("readers", manifest.ops.readers), ("processors", manifest.ops.processors)):
        for op, target in ops.items():
            field_name = f"asset.json.ops.{role}.{op}"
            if op in builtin_ops:
                raise refuse(field_name, f"{op!r} is a built-in operation; choose another name")
            if not files & set(_module_files(target, root)):
                raise refuse(field_name, f"module of {target!r} is not in the zip")
    return Bundle(asset_id_of(data), sha_of(data), manifest, root, len(data), total)


def claim_key(name: str, version: str) -> str:
    """The key of a name/version claim: '@' never occurs in a 40-hex id."""
    return f"{name}@{version}"


def version_taken(name: str, version: str, holder: str | None, deleted: bool) -> Conflict:
    """An upload under a name and version another bundle holds, or held: a claim is kept
    when its asset is deleted (a tombstone), so `name@version` names one bundle forever."""
    if deleted:
        reason = (
            f"{name}@{version} was used by deleted asset {holder}; a deleted version is never "
            "reusable"
        )
    else:
        reason = f"{name}@{version} is taken by asset {holder}"
    return Conflict(
        f"asset {name} {version}: {reason}; bump the version in asset.json",
        errors=[{"field": "asset.json.version", "reason": reason}],
    )


def parse_ref(ref: str) -> tuple[str, str | None]:
    """A job's asset reference: an id, `name` (its newest upload) or `name:version`."""
    name, _, version = ref.partition(":")
    return name, version or None
