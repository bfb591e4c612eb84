"""A small asset bundle for the asset and op-source suites."""

from __future__ import annotations

import io
import json
import zipfile

OPS = {"readers": {"numbers": "pkg.io:numbers"}, "processors": {"double": "pkg.io:double"}}
IO_PY = """
def numbers(params, args):
    for i in range(params.get("count", 2)):
        yield {"n": i}


def double(params, data, ctx):
    return {"n": data["n"] * 2}
"""


def bundle(name: str = "nums", version: str = "1.0.0", salt: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        manifest = {"name": name, "version": version, "ops": OPS}
        zf.writestr("asset.json", json.dumps(manifest))
        zf.writestr("pkg/__init__.py", "")
        zf.writestr("pkg/io.py", IO_PY + salt)
    return buf.getvalue()
