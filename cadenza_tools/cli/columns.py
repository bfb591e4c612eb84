"""Table columns shared by several command groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cadenza_tools.cli.output import Column


def _progress(ex: Mapping[str, Any]) -> str:
    stats = ex.get("_slicer_stats") or {}
    done = (stats.get("processed") or 0) + (stats.get("failed") or 0)
    return f"{done}/{stats.get('slices_total') or 0}"


JOB_COLUMNS: list[Column] = [
    ("job_id", "job_id"),
    ("name", "name"),
    ("schedule", "schedule_state"),
    ("active", "active"),
    ("workers", "workers"),
    ("next fire", "next_fire_at"),
    ("updated", "_updated"),
]
EX_COLUMNS: list[Column] = [
    ("ex_id", "ex_id"),
    ("job_id", "job_id"),
    ("name", "name"),
    ("status", "_status"),
    ("slices", _progress),
    ("failed", lambda ex: (ex.get("_slicer_stats") or {}).get("failed")),
    ("trigger", "trigger"),
    ("updated", "_updated"),
]
SLICE_COLUMNS: list[Column] = [
    ("slice_id", "slice_id"),
    ("ex_id", "ex_id"),
    ("order", "slicer_order"),
    ("state", "state"),
    ("attempts", "attempts"),
    ("error", "error"),
    ("updated", "_updated"),
]
CONTROLLER_COLUMNS: list[Column] = [
    ("ex_id", "ex_id"),
    ("job_id", "job_id"),
    ("name", "name"),
    ("status", "_status"),
    ("workers", "workers_active"),
    ("processed", "processed"),
    ("failed", "failed"),
    ("queued", "queued"),
    ("started", "started"),
]
