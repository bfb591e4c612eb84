"""A job's run history in OpenSpecimen's words: its run statuses and its dates.

OpenSpecimen has three statuses for a run that executed: IN_PROGRESS, SUCCEEDED and
FAILED. Cadenza's execution statuses (Teraslice's) map onto them, every one to exactly
one: every non-terminal status is IN_PROGRESS; `completed` is SUCCEEDED; `failed`,
`rejected`, `terminated` and `stopped` are FAILED. A stopped run (stopped by a newer slot
under `cancel_other`, or on request) ended without completing its work: it did not
succeed, and it is not in progress, so it is FAILED, with the reason in its message.
A `completed` run never has errors (a run with a failed slice ends `failed`).

Cadenza's missed-run ledger adds two statuses for slots that did not run at all: SKIPPED
(`skipped`: the job was at its limit of active runs) and MISSED (`missed`: the slot went by
while the job was suspended, the supervisor halted, or past the misfire grace). They are
not runs that executed, so they are in none of OpenSpecimen's three; a listing without a
status shows them, and `status=SKIPPED` / `status=MISSED` selects them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from chalicelib.domain.errors import InvalidInput
from chalicelib.domain.transitions import ACTIVE_EX, ExStatus, JobState


class RunGroup(StrEnum):
    """A run's status as OpenSpecimen's API reports it (plus the ledger's two)."""

    IN_PROGRESS = "IN_PROGRESS"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    MISSED = "MISSED"


EXECUTED = (RunGroup.IN_PROGRESS, RunGroup.SUCCEEDED, RunGroup.FAILED)
LEDGER = (RunGroup.SKIPPED, RunGroup.MISSED)

GROUP_STATUSES: Mapping[RunGroup, frozenset[ExStatus]] = {
    RunGroup.IN_PROGRESS: frozenset(ACTIVE_EX),
    RunGroup.SUCCEEDED: frozenset({ExStatus.completed}),
    RunGroup.FAILED: frozenset(
        {ExStatus.failed, ExStatus.rejected, ExStatus.terminated, ExStatus.stopped}
    ),
    RunGroup.SKIPPED: frozenset({ExStatus.skipped}),
    RunGroup.MISSED: frozenset({ExStatus.missed}),
}
_GROUP_OF: Mapping[ExStatus, RunGroup] = {
    status: group for group, statuses in GROUP_STATUSES.items() for status in statuses
}


def group_of(status: ExStatus) -> RunGroup:
    """The one OpenSpecimen status of an execution status."""
    return _GROUP_OF[ExStatus(status)]


# ---- request values ---------------------------------------------------------------------
DATE_FORMS = "YYYYMMDD (that day, 00:00 UTC) or YYYYMMDDTHHMMSS (that instant, UTC)"
_DATE = re.compile(r"\d{8}")
_DATE_TIME = re.compile(r"\d{8}T\d{6}")
DEFAULT_MAX_RESULTS = 100
MAX_MAX_RESULTS = 1000


def invalid(name: str, reason: str) -> InvalidInput:
    return InvalidInput(f"{name}: {reason}", [{"field": name, "reason": reason}])


def parse_date(name: str, raw: str | None) -> float | None:
    """An OpenSpecimen date: `20220221` is 2022-02-21T00:00:00Z, `20220221T061500` is
    2022-02-21T06:15:00Z. None (or empty) when not given; InvalidInput naming the field
    and the accepted forms for anything else."""
    if raw is None or raw == "":
        return None
    text = raw.strip()
    if _DATE.fullmatch(text):
        fmt = "%Y%m%d"
    elif _DATE_TIME.fullmatch(text):
        fmt = "%Y%m%dT%H%M%S"
    else:
        raise invalid(name, f"{raw!r} is not a date: use {DATE_FORMS}")
    try:
        return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
    except ValueError as err:
        raise invalid(name, f"{raw!r} is not a valid date ({err}): use {DATE_FORMS}") from err


def parse_group(raw: str | None, name: str = "status") -> RunGroup | None:
    """OpenSpecimen's run status filter (case-insensitive), or None when not given."""
    if raw is None or raw == "":
        return None
    try:
        return RunGroup(raw.strip().upper())
    except ValueError:
        allowed = ", ".join(RunGroup)
        raise invalid(name, f"unknown status {raw!r}; use one of {allowed}") from None


def parse_state(raw: str | None, name: str = "state") -> JobState | None:
    """A Lens schedule state filter (case-insensitive), or None when not given."""
    if raw is None or raw == "":
        return None
    try:
        return JobState(raw.strip().upper())
    except ValueError:
        allowed = ", ".join(JobState)
        raise invalid(name, f"unknown schedule state {raw!r}; use one of {allowed}") from None


def parse_max_results(raw: str | None, name: str = "maxResults") -> int:
    """A page size: a whole number from 1 to 1000 (100 when not given)."""
    if raw is None or raw == "":
        return DEFAULT_MAX_RESULTS
    text = raw.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_MAX_RESULTS:
        raise invalid(name, f"{raw!r} is not a whole number from 1 to {MAX_MAX_RESULTS}")
    return int(text)


@dataclass(frozen=True)
class Window:
    """Runs created from `lo` (None: since the earliest instant) to `hi`, both inclusive."""

    lo: float | None
    hi: float

    @classmethod
    def parse(cls, from_date: str | None, to_date: str | None, now: float) -> Window:
        """fromDate defaults to the earliest instant and toDate to now (a fromDate after
        now, without toDate: the window from fromDate to itself, with no run yet); fromDate
        after a given toDate is InvalidInput naming fromDate."""
        lo = parse_date("fromDate", from_date)
        hi = parse_date("toDate", to_date)
        if hi is None:
            hi = now if lo is None else max(now, lo)
        if lo is not None and lo > hi:
            raise InvalidInput(
                "fromDate: is after toDate",
                [
                    {"field": "fromDate", "reason": "is after toDate"},
                    {"field": "toDate", "reason": "is before fromDate"},
                ],
            )
        return cls(lo, hi)


@dataclass
class RunCounts:
    """How many runs had each execution status; by OpenSpecimen status on demand."""

    by_status: dict[ExStatus, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def by_group(self) -> dict[RunGroup, int]:
        out = dict.fromkeys(RunGroup, 0)
        for status, n in self.by_status.items():
            out[group_of(status)] += n
        return out

    def add(self, other: RunCounts) -> None:
        for status, n in other.by_status.items():
            self.by_status[status] = self.by_status.get(status, 0) + n
