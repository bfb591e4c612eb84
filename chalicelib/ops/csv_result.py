"""The `csv_result` processor's file: each slice's data as CSV rows, one part per slice
under the run's prefix; the parts, in slice order, make the run's result file.

Data becomes rows thus: a list of objects, one row each (columns: `columns`, else the
keys in order of first appearance); one object, one row; a list of lists, rows as they
are (columns `c1`, `c2`, ... unless named); a list of scalars or a scalar, one column
(`value`); None, no rows. Nested values are JSON. Every part starts with its header; the
file keeps the first one (give `columns` when slices' data have different keys).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from chalicelib.ports import BlobStore

CSV_TYPE = "text/csv; charset=utf-8"
RESULT_OP = "csv_result"


def result_prefix(job_id: str, ex_id: str) -> str:
    return f"results/{job_id}/{ex_id}/"


def part_key(job_id: str, ex_id: str, order: int) -> str:
    return f"{result_prefix(job_id, ex_id)}part-{order:06d}.csv"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def rows_of(data: Any, columns: Sequence[str] | None) -> tuple[list[str] | None, list[list[str]]]:
    """The header (None: no data and no columns) and rows for a slice's data."""
    if data is None:
        return (list(columns) if columns else None), []
    items = data if isinstance(data, list) else [data]
    if items and all(isinstance(i, dict) for i in items):
        header = list(columns or dict.fromkeys(k for i in items for k in i))
        return header, [[_cell(i.get(c)) for c in header] for i in items]
    rows = [[_cell(v) for v in i] if isinstance(i, list) else [_cell(i)] for i in items]
    width = max((len(r) for r in rows), default=1)
    default = ["value"] if all(not isinstance(i, list) for i in items) else None
    header = list(columns or default or [f"c{n + 1}" for n in range(width)])
    return header, rows


def to_csv(header: Sequence[str] | None, rows: Iterable[Sequence[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def write_part(params: Any, data: Any, ctx: Any) -> None:
    """Write one slice's part (a retry overwrites its own part: still one per slice)."""
    files: BlobStore | None = ctx.files
    if files is None:
        raise RuntimeError("csv_result: this worker has no bucket to write to")
    header, rows = rows_of(data, params.columns)
    files.put(part_key(ctx.job_id, ctx.ex_id, ctx.order), to_csv(header, rows), CSV_TYPE)


def combine(parts: Iterable[bytes]) -> bytes:
    """The run's file: the parts in order, the header once (parts that repeat the first
    header lose theirs; empty parts are skipped)."""
    header: list[str] | None = None
    rows: list[list[str]] = []
    for raw in parts:
        part = list(csv.reader(io.StringIO(raw.decode())))
        if not part:
            continue
        if header is None:
            header = part[0]
        if part[0] == header:
            part = part[1:]
        rows.extend(part)
    return to_csv(header, rows)
