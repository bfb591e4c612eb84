"""Teraslice's listing options (seed 001): from / size / sort, status lists, `ex` fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.transitions import ExStatus
from chalicelib.entrypoints.http.errors import query_int
from chalicelib.ports import MAX_WINDOW, Sort

SORT_FIELDS = {"_created": "created", "_updated": "updated"}
DEFAULT_SIZE = 100


def _bad(field: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{field}: {reason}", [{"field": field, "reason": reason}])


def parse_sort(params: Mapping[str, str]) -> Sort:
    """`sort` as `_created` or `_updated`, optionally `:asc` / `:desc` (default
    `_updated:desc`); anything else is a 400 naming `sort`."""
    raw = params.get("sort") or "_updated:desc"
    name, _, direction = raw.partition(":")
    if name not in SORT_FIELDS or direction not in ("", "asc", "desc"):
        raise _bad("sort", f"expected _updated or _created, then :asc or :desc, got {raw!r}")
    return Sort(SORT_FIELDS[name], direction == "asc")


def parse_window(params: Mapping[str, str] | None) -> tuple[int, int, Sort]:
    """(from, size, sort); from + size may not pass Elasticsearch's 10,000 window."""
    q = params or {}
    start = query_int(q, "from") or 0
    size = query_int(q, "size")
    size = DEFAULT_SIZE if size is None else size
    if start + size > MAX_WINDOW:
        raise InvalidInput(
            f"from + size: at most {MAX_WINDOW} (got {start + size})",
            [
                {"field": name, "reason": f"from + size must be at most {MAX_WINDOW}"}
                for name in ("from", "size")
            ],
        )
    return start, size, parse_sort(q)


def parse_statuses(params: Mapping[str, str] | None) -> list[ExStatus] | None:
    """`status`: one Teraslice status or a comma list; absent, empty or `*`: every one."""
    raw = (params or {}).get("status") or ""
    names = [n.strip() for n in raw.split(",") if n.strip() and n.strip() != "*"]
    known = {str(s) for s in ExStatus}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise _bad("status", f"unknown {', '.join(unknown)}; expected {', '.join(sorted(known))}")
    return [ExStatus(n) for n in dict.fromkeys(names)] or None


def parse_ex_fields(params: Mapping[str, str] | None) -> list[str] | None:
    """`ex`: None when absent (no execution attached); [] when empty (every field); else
    the comma-separated field names."""
    q = params or {}
    if "ex" not in q:
        return None
    return [f.strip() for f in q["ex"].split(",") if f.strip()]


def pick(doc: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """Only `fields` of an execution document (every field when none are named). Unknown
    names are ignored, like Elasticsearch's source filtering that Teraslice passes on."""
    if not fields:
        return doc
    return {f: doc[f] for f in fields if f in doc}
