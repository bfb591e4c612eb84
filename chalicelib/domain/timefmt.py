"""Timestamps: epoch seconds inside, ISO 8601 UTC with a Z outside (Teraslice's form)."""

from __future__ import annotations

from datetime import UTC, datetime


def to_epoch(dt: datetime) -> float:
    if dt.tzinfo is None:
        raise ValueError("naive datetime")
    return dt.timestamp()


def from_epoch(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def iso(ts: float | None) -> str | None:
    """Epoch seconds as '2026-11-22T02:05:00.000Z', or None."""
    if ts is None:
        return None
    return from_epoch(ts).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def slot_key(ts: float) -> str:
    """A slot's sortable key: whole-second UTC ISO form, e.g. '2026-11-22T02:05:00Z'."""
    return from_epoch(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_slot_key(slot: str) -> float:
    base = slot.split("#", 1)[0]
    return datetime.strptime(base[:20], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
