"""Opaque page tokens: a query's LastEvaluatedKey as base64url JSON, checked on the way in.

A token is only a position in one listing. Before it goes back to DynamoDB as the
ExclusiveStartKey it is checked against the listing it is used with (its attribute names,
its partition key, and for a time window that its sort key lies inside the window), so a
forged, truncated or foreign token is a 400 naming `next`, never a DynamoDB
ValidationException (which the store would report as a 503).
"""

from __future__ import annotations

import base64
import binascii
import heapq
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from chalicelib.domain.errors import InvalidInput

Key = dict[str, dict[str, str]]
T = TypeVar("T")
MAX_TOKEN_CHARS = 2048
CURSOR_FIELD = "next"


def encode_cursor(key: Mapping[str, Mapping[str, Any]] | None) -> str | None:
    """The token for a LastEvaluatedKey (None: there is no next page)."""
    if not key:
        return None
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad(reason: str) -> InvalidInput:
    return InvalidInput(f"{CURSOR_FIELD}: {reason}", [{"field": CURSOR_FIELD, "reason": reason}])


def decode_cursor(
    token: str | None,
    *,
    names: frozenset[str],
    fixed: Mapping[str, str],
    number: str | None = None,
    lo: float | None = None,
    hi: float | None = None,
) -> Key | None:
    """The LastEvaluatedKey in `token`, or None for no token. It must have exactly the
    attributes `names`, string values equal to `fixed` (the partition key of the query),
    and, if `number` is given, that numeric attribute within [lo, hi]. InvalidInput
    naming `next` otherwise."""
    if token is None or token == "":
        return None
    key = _parsed(token)
    if not isinstance(key, dict) or set(key) != names:
        raise _bad("not a page token of this listing")
    for name, value in key.items():
        _check_value(name, value, fixed)
    if number is not None:
        _check_within(key[number], lo, hi)
    return key


def _parsed(token: str) -> object:
    if len(token) > MAX_TOKEN_CHARS:
        raise _bad("not a page token of this listing (too long)")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as err:
        raise _bad("not a page token (use the one the previous page returned)") from err


def _check_value(name: str, value: object, fixed: Mapping[str, str]) -> None:
    """One attribute of a key: a typed string ({"S": ...} or {"N": ...}), equal to the
    query's partition key if it is one."""
    if not (
        isinstance(value, dict)
        and len(value) == 1
        and next(iter(value)) in ("S", "N")
        and isinstance(next(iter(value.values())), str)
    ):
        raise _bad("not a page token of this listing")
    if name in fixed and value != {"S": fixed[name]}:
        raise _bad("a page token of another listing")


def _check_within(typed: dict[str, str], lo: float | None, hi: float | None) -> None:
    """The key's sort key: a number inside the window [lo, hi] the listing asks for."""
    try:
        n = float(typed["N"]) if "N" in typed else math.nan
    except ValueError:
        n = math.nan
    if math.isnan(n):
        raise _bad("not a page token of this listing")
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        raise _bad("a page token of another time window (keep fromDate and toDate)")


def take_page(it: Iterator[Any], limit: int) -> tuple[list[Any], Key | None]:
    """Up to `limit` items of a PynamoDB query iterator, and the key to resume after the
    last of them, or None when no item follows it. The iterator should be made with
    `page_size=limit + 1` and no `limit`, so the look-ahead item usually comes in the same
    DynamoDB call; the last page therefore never ends with a token to an empty page."""
    items: list[Any] = []
    for item in it:
        items.append(item)
        if len(items) == limit:
            break
    if len(items) < limit:
        return items, None
    # PynamoDB rebuilds the key of the last item returned when a page is cut short, and
    # gives DynamoDB's own LastEvaluatedKey at the end of a page
    resume: Key | None = getattr(it, "last_evaluated_key", None)
    if resume is None or next(it, None) is None:
        return items, None
    return items, resume


def _ties_ordered(
    items: Iterable[T], key: Callable[[T], tuple[Any, ...]], ascending: bool
) -> Iterator[T]:
    """An index's items, already in order of their sort key, with each run of equal sort
    keys put in order of the whole key (an index leaves the order of ties open)."""
    group: list[T] = []
    for item in items:
        if group and key(item)[0] != key(group[0])[0]:
            yield from sorted(group, key=key, reverse=not ascending)
            group = []
        group.append(item)
    yield from sorted(group, key=key, reverse=not ascending)


def merged_window(
    streams: Sequence[Iterable[T]],
    key: Callable[[T], tuple[Any, ...]],
    start: int,
    size: int,
    ascending: bool,
) -> list[T]:
    """Items `start` to `start + size` of the merge of `streams`, each in the order of its
    index's sort key (key(item)[0]). The whole key (sort key, then ids) orders ties, so the
    same data always pages the same way. Streams are read lazily: only as far as the
    window needs (plus one look-ahead page each)."""
    if size < 1:
        return []
    ordered = [_ties_ordered(s, key, ascending) for s in streams]
    merged = heapq.merge(*ordered, key=key, reverse=not ascending)
    return list(itertools.islice(merged, start, start + size))
