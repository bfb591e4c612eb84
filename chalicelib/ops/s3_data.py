"""The `s3` reader (one slice per object under a prefix, or per byte range of a large
object), the `s3_get` processor (a slice's object as lines or text) and the `s3_put`
writer (a slice's data as JSON lines or CSV, one object per slice)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from chalicelib.ops.clients import current
from chalicelib.ops.csv_result import CSV_TYPE, rows_of, to_csv
from chalicelib.ops.targets.base import access

LOOKAHEAD = 64 * 1024  # read past a range's end this much at a time, to finish its last line
JSONL_TYPE = "application/x-ndjson"


def read_objects(p: Any, args: str | None) -> Iterator[dict[str, Any]]:
    """One request per object under the prefix, or per `chunk_bytes` of a larger one."""
    clients = current()
    bucket = access().bucket(p.bucket)
    for key, size in clients.need_objects("s3").list_objects(bucket, p.prefix):
        if key.endswith("/") and size == 0:
            continue  # a "folder" marker
        if p.chunk_bytes is None or size <= p.chunk_bytes:
            yield {"bucket": bucket, "key": key, "size": size, "range": None}
            continue
        for first in range(0, size, p.chunk_bytes):
            last = min(first + p.chunk_bytes, size) - 1
            yield {"bucket": bucket, "key": key, "size": size, "range": [first, last]}


def get_object(p: Any, data: Any, ctx: Any) -> Any:
    """The slice's object (or range): its lines (a line belongs to the range it starts in)
    or its text."""
    if not isinstance(data, dict) or not {"bucket", "key"} <= data.keys():
        raise ValueError("s3_get: the slice's request names no bucket and key (use the s3 reader)")
    clients = current()
    bucket = access().bucket(str(data["bucket"]))
    objects = clients.need_objects("s3_get")
    key, span = str(data["key"]), data.get("range")
    if span is None:
        raw = objects.get_object(bucket, key, None)
    else:
        raw = _range_lines(
            lambda a, b: objects.get_object(bucket, key, (a, b)),
            int(data["size"]),
            int(span[0]),
            int(span[1]),
        )
    return {"bucket": bucket, "key": key, "range": span, p.format: _body(raw, p.format, p.encoding)}


def _body(raw: bytes, fmt: str, encoding: str) -> Any:
    if fmt == "base64":
        return base64.b64encode(raw).decode()
    text = raw.decode(encoding, errors="replace")
    if fmt == "text":
        return text
    lines = text.splitlines()
    return [json.loads(line) for line in lines if line.strip()] if fmt == "json_lines" else lines


def _range_lines(get: Any, size: int, first: int, last: int) -> bytes:
    """The bytes of the lines that start within [first, last], whole (read past `last`
    until the last one ends)."""
    start = max(0, first - 1)
    buf: bytes = get(start, last)
    if first > 0:
        newline = buf.find(b"\n")
        if newline < 0 or start + newline + 1 > last:
            return b""  # no line starts in this range
        buf = buf[newline + 1 :]
    end = last
    while not buf.endswith(b"\n") and end < size - 1:
        more: bytes = get(end + 1, min(size - 1, end + LOOKAHEAD))
        end += len(more)
        if not more:
            break
        newline = more.find(b"\n")
        if newline >= 0:
            return buf + more[: newline + 1]
        buf += more
    return buf


def part_key(prefix: str, ex_id: str, order: int, fmt: str) -> str:
    """One object per slice of a run: a redelivered or retried slice overwrites its own."""
    return f"{prefix}{ex_id}/part-{order:06d}.{'jsonl' if fmt == 'json_lines' else 'csv'}"


def put_object(p: Any, data: Any, ctx: Any) -> Any:
    """Write the slice's data under the prefix; the slice's result says where."""
    clients = current()
    bucket = access().bucket(p.bucket)
    key = part_key(p.prefix, ctx.ex_id, ctx.order, p.format)
    items = [] if data is None else data if isinstance(data, list) else [data]
    if p.format == "json_lines":
        body = b"".join(
            json.dumps(item, separators=(",", ":"), default=str).encode() + b"\n" for item in items
        )
        content_type = JSONL_TYPE
    else:
        header, rows = rows_of(data, p.columns)
        body, content_type = to_csv(header, rows), CSV_TYPE
    clients.need_objects("s3_put").put_object(bucket, key, body, content_type)
    return {"bucket": bucket, "key": key, "items": len(items), "bytes": len(body)}
