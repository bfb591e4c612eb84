"""Jobs by id, the due index, versioned job writes."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from chalicelib.domain.errors import Conflict
from chalicelib.domain.jobs import Job, due_shard
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import JOB_MACHINE, TERMINAL_EX, JobState
from chalicelib.ports import JobStore
from tests.fakes.tables import JOB_FIELDS, Tables, as_json, indexed


class JobsMixin(Tables, JobStore):
    """Jobs by id, the due index, versioned job writes."""

    def create_job(self, job: Job, run: Run | None = None) -> None:
        with self._lock:
            if job.job_id in self.jobs or (run is not None and (run.job_id, run.slot) in self.runs):
                raise Conflict(f"job {job.job_id} exists", job_id=job.job_id)
            self.jobs[job.job_id] = self._job_in(job)
            if run is not None:
                self._put_run(run)

    def get_job(self, job_id: str) -> Job | None:
        return self._read(lambda: self.jobs.get(job_id))

    def _on_due_index(self, job: Job, shard: int) -> bool:
        return (
            job.state == JobState.SCHEDULED
            and job.next_fire_at is not None
            and not job.deleted
            and due_shard(job.job_id, self.settings.due_shards) == shard
        )

    def due_jobs(self, shard: int, horizon: float, limit: int = 500) -> list[Job]:
        def due() -> list[Job]:
            found = [
                j
                for j in self.jobs.values()
                if self._on_due_index(j, shard) and (j.next_fire_at or 0) <= horizon
            ]
            return indexed(sorted(found, key=lambda j: (j.next_fire_at, j.job_id))[:limit])

        return self._read(due)

    def set_job_state(
        self,
        job: Job,
        state: JobState,
        next_fire_at: float | None,
        anchor: float | None = None,
        extra: dict[str, float | None] | None = None,
        now: float | None = None,
    ) -> bool:
        sources = JOB_MACHINE.sources_for(state) | ({state} if state == job.state else set())
        with self._lock:
            stored = self.jobs.get(job.job_id)
            if stored is None or stored.version != job.version or stored.state not in sources:
                return False
            self._schedule(stored, state, next_fire_at, time.time() if now is None else now)
            if anchor is not None:
                stored.anchor = anchor
            for k, v in (extra or {}).items():
                if k not in JOB_FIELDS:
                    raise ValueError(f"not a job field: {k}")
                setattr(stored, k, v)
            return True

    def release_slots(self, job_id: str, slots: Iterable[str]) -> None:
        with self._lock:
            stored = self.jobs.get(job_id)
            if stored is not None:
                stored.active_slots -= set(slots)

    def _job_update(self, job: Job, idle: bool = False) -> Job | None:
        """The stored job if it is still at job.version, not deleted (and, with `idle`,
        holds no active slot): the condition of update_job, set_job_active, delete_job."""
        stored = self.jobs.get(job.job_id)
        if stored is None or stored.version != job.version or stored.deleted:
            return None
        if idle and stored.active_slots:
            return None
        return stored

    def update_job(
        self,
        job: Job,
        definition: dict[str, Any],
        schedule: tuple[JobState, float | None, float | None] | None,
        now: float,
    ) -> bool:
        with self._lock:
            stored = self._job_update(job)
            if stored is None:
                return False
            if schedule is None:
                stored.version, stored.updated = job.version + 1, now
            else:
                state, nxt, anchor = schedule
                self._schedule(stored, state, nxt, now)
                if anchor is not None:
                    stored.anchor = anchor
            stored.definition = as_json(definition)
            return True

    def set_job_active(self, job: Job, active: bool, now: float) -> bool:
        with self._lock:
            stored = self._job_update(job)
            if stored is None:
                return False
            stored.active, stored.version, stored.updated = active, job.version + 1, now
            return True

    def delete_job(self, job: Job, now: float) -> bool:
        with self._lock:
            stored = self._job_update(job, idle=True)
            if stored is None:
                return False
            stored.deleted, stored.deleted_on, stored.active = True, now, False
            stored.updated, stored.version, stored.next_fire_at = now, job.version + 1, None
            return True

    def mark_runs_deleted(self, job_id: str) -> int:
        with self._lock:
            marked = 0
            for (jid, _), run in self.runs.items():
                if jid == job_id and not run.deleted and run.status in TERMINAL_EX:
                    run.deleted = True
                    marked += 1
            return marked
