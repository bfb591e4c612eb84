"""Limits on what a request may carry: the depth and the stored size of JSON values."""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from typing import Any

from chalicelib.domain.errors import LimitExceeded, OwnerLimitReached, TooLarge
from chalicelib.domain.schedules import Schedule


def json_depth(value: Any) -> int:
    """How deep arrays and objects nest in a decoded JSON value (a scalar: 0, `[]`: 1),
    measured without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def too_many_workers(field: str, workers: int, limit: int) -> LimitExceeded:
    return LimitExceeded(
        field, "max_workers", limit, f"{workers} workers; an execution may have at most {limit}"
    )


def too_deep(field: str, limit: int) -> LimitExceeded:
    return LimitExceeded(
        field, "max_json_depth", limit, f"nests arrays and objects deeper than {limit} levels"
    )


def check_depth(field: str, value: Any, limit: int) -> None:
    """LimitExceeded (400) if `value` nests deeper than `limit`."""
    if json_depth(value) > limit:
        raise too_deep(field, limit)


def stored_size(value: Any) -> int:
    """The bytes `value` takes as the store writes it (JSON, ASCII escapes)."""
    return len(json.dumps(value))


def check_stored_size(field: str, value: Any, limit: int, name: str) -> None:
    """TooLarge (413) if `value` as stored takes more than `limit` bytes."""
    size = stored_size(value)
    if size > limit:
        raise TooLarge(
            field, name, limit, f"takes {size} bytes as stored; the limit is {limit} bytes"
        )


CRON_STEP_SECONDS = 60  # a cron names minutes: its slots are never closer
_PROBED_SLOTS = 100


def shortest_period(schedule: Schedule, now: datetime, at_least: int) -> int | None:
    """The shortest time between two slots of `schedule`: a rate's or an interval's period;
    for a cron, the smallest gap among its next slots (unless `at_least` is within a minute,
    which any cron keeps); None for a one-off."""
    if schedule.period_seconds is not None:
        return schedule.period_seconds
    if schedule.cron is None or at_least <= CRON_STEP_SECONDS:
        return None
    slots: list[datetime] = []
    after = now
    while len(slots) < _PROBED_SLOTS:
        nxt = schedule.next_fire_after(after, now)
        if nxt is None:
            break
        slots.append(nxt)
        after = nxt
    gaps = [int((b - a).total_seconds()) for a, b in itertools.pairwise(slots)]
    return min(gaps, default=None)


def check_schedule_period(schedule: Schedule, now: datetime, limit: int) -> None:
    """LimitExceeded if two slots of `schedule` can come closer than `limit` seconds."""
    period = shortest_period(schedule, now, limit)
    if period is not None and period < limit:
        raise LimitExceeded(
            "schedule",
            "min_schedule_seconds",
            limit,
            f"slots {period} seconds apart; the shortest period allowed is {limit} seconds",
        )


# ---- per owner: the quotas' members ---------------------------------------------------------
JOBS, RUNS = "jobs", "runs"  # the kinds of quota: jobs, and on-demand runs active at once
QUOTA_GRACE_SECONDS = 120  # a member whose record may still be being written


def quota_member(key: str, now: float) -> str:
    """A quota's member: what it counts (a job id; a run's `job_id|slot`) and when it was
    taken, so that one whose record was never written can be told from one in flight."""
    return f"{key}@{int(now)}"


def quota_key(member: str) -> tuple[str, float]:
    key, _, taken = member.rpartition("@")
    return key, float(taken or 0)


def run_key(job_id: str, slot: str) -> str:
    return f"{job_id}|{slot}"


def owner_limit_reached(kind: str, limit: int) -> OwnerLimitReached:
    if kind == JOBS:
        return OwnerLimitReached(
            "owner",
            "max_jobs_per_owner",
            limit,
            f"you own {limit} jobs, as many as this stage allows; delete one first",
        )
    return OwnerLimitReached(
        "owner",
        "max_active_runs_per_owner",
        limit,
        f"{limit} runs you started on demand are active, as many as this stage allows; "
        "try again when one has ended",
    )
