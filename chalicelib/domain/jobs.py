"""A job: its validated definition (Teraslice shape plus a schedule) and its stored record."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from chalicelib.domain.notifications import NotifySpec
from chalicelib.domain.schedules import Schedule
from chalicelib.domain.transitions import JobState


class Operation(BaseModel):
    """One step of a job: `{"_op": name, ...params}`; params are checked by the op itself."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    op: str = Field(alias="_op", min_length=1, max_length=100)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def to_dict(self) -> dict[str, Any]:
        return {"_op": self.op, **self.params}


class JobDefinition(BaseModel):
    """What a user submits. The first operation slices the work, the rest process each slice.
    Strict: `true` is not a number, nor `"5"` or `5.0` an integer."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, max_length=256)
    # set from the authenticated caller (an IAM ARN: up to 2048 characters), never the body
    owner: str = Field(default="anonymous", min_length=1, max_length=2048)
    lifecycle: Literal["once", "persistent"] = "once"
    operations: list[Operation] = Field(min_length=1, max_length=50)
    workers: int = Field(default=1, ge=1, le=1000)
    max_retries: int = Field(default=3, ge=0, le=100)
    timeout_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    lease_seconds: int = Field(default=60, ge=1, le=12 * 3600)
    schedule: Schedule | None = None
    overlap: Literal["allow", "skip", "buffer_one", "cancel_other"] = "skip"
    max_active_runs: int | None = Field(default=None, ge=1, le=1000)
    misfire_grace_seconds: int = Field(default=60, ge=0, le=7 * 24 * 3600)
    catchup: Literal["none", "latest", "all"] = "latest"
    max_catchup: int = Field(default=10, ge=1, le=1000)
    jitter_seconds: int = Field(default=0, ge=0, le=3600)
    analytics: bool = True
    assets: list[str] = Field(default_factory=list, max_length=50)
    slicers: int = Field(default=1, ge=1, le=1)
    probation_window: int = Field(default=300000, ge=0)
    # which events to be told about, and where (docs/notifications.md)
    notify: NotifySpec | None = None
    # days its finished runs, their slices and its ledger records are kept (None: the
    # stage's CADENZA_HISTORY_DAYS); its latest run is kept however old
    history_days: int | None = Field(default=None, ge=1, le=3650)

    @field_validator("name", "owner")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v

    @field_validator("max_active_runs")
    @classmethod
    def _limit_fits_overlap(cls, v: int | None, info: ValidationInfo) -> int | None:
        overlap = info.data.get("overlap", "skip")
        if overlap != "allow" and v not in (None, 1):
            raise ValueError(
                f"only overlap 'allow' may run more than one at once (overlap is {overlap!r})"
            )
        return v

    @property
    def active_limit(self) -> int | None:
        """How many runs of this job may be active at once (None: no limit)."""
        return active_limit_of({"overlap": self.overlap, "max_active_runs": self.max_active_runs})

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude={"operations", "schedule"})
        out["operations"] = [op.to_dict() for op in self.operations]
        out["schedule"] = (
            self.schedule.model_dump(mode="json", exclude_none=True) if self.schedule else None
        )
        if self.notify is None:
            out.pop("notify", None)
        else:
            out["notify"] = self.notify.model_dump(mode="json", exclude_none=True)
        return out


def active_limit_of(definition: Mapping[str, Any]) -> int | None:
    """How many runs of a job (its stored definition, or a run's copy of it) may be active
    at once; None: no limit. Read without validating the whole definition."""
    if definition.get("overlap", "skip") == "allow":
        limit = definition.get("max_active_runs")
        return None if limit is None else int(limit)
    return 1


def due_shard(job_id: str, shards: int) -> int:
    """A stable shard for a job, so no single index partition is hot."""
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:8], 16) % shards


@dataclass
class Job:
    """A stored job: its definition plus schedule state and bookkeeping."""

    job_id: str
    definition: dict[str, Any]
    state: JobState = JobState.NEW
    active: bool = True
    deleted: bool = False
    deleted_on: float | None = None
    next_fire_at: float | None = None
    anchor: float | None = None
    version: int = 0
    active_slots: set[str] = field(default_factory=set)
    buffered_slot: str | None = None
    waiting_slots: set[str] = field(default_factory=set)  # catch-up runs waiting their turn
    # missed slots (slot, reason) behind its cursor whose ledger records are not written yet
    unrecorded: list[tuple[float, str]] = field(default_factory=list)
    suspended_at: float | None = None
    resumed_at: float | None = None
    created: float = 0.0
    updated: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> JobDefinition:
        return JobDefinition.model_validate(self.definition)

    @property
    def schedule_anchor(self) -> float:
        """The time its schedule counts from: its last (re)start, else its creation."""
        return self.anchor if self.anchor is not None else self.created

    @property
    def name(self) -> str:
        return str(self.definition.get("name", ""))
