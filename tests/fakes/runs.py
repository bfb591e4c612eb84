"""Runs: one per slot, slots held and freed, and the one conditional run write."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from chalicelib.adapters.dynamodb.run_items import _one_slice_error as one_slice_error
from chalicelib.domain.jobs import Job, due_shard
from chalicelib.domain.runs import Run, RunTransition
from chalicelib.domain.transitions import LEDGER_EX, TERMINAL_EX, ExStatus, JobState
from chalicelib.ports import LiveRunStore, RunStore, SlotWrite
from tests.fakes.tables import MAX_TX_ITEMS, RUN_FIELDS, Tables, as_json, run_field_default


class RunsMixin(Tables, RunStore, LiveRunStore):
    """Runs: one per slot, slots held and freed, and the one conditional run write."""

    def _scheduled_job(self, job: Job) -> Job | None:
        """The stored job, if it is still SCHEDULED at job.version (the tick's condition)."""
        stored = self.jobs.get(job.job_id)
        if stored is None or stored.version != job.version or stored.state != JobState.SCHEDULED:
            return None
        return stored

    def _advance(self, stored: Job, next_fire_at: float | None, expire: bool, now: float) -> None:
        state = JobState.EXPIRED if expire or next_fire_at is None else JobState.SCHEDULED
        self._schedule(stored, state, next_fire_at, now)

    def create_slots_refused(self, writes: Sequence[SlotWrite]) -> frozenset[int] | None:
        if self.create_slots(writes):  # the one write path (tests wrap it)
            return None
        with self._lock:
            return self._refused(writes)

    def _refused(self, writes: Sequence[SlotWrite]) -> frozenset[int]:
        stored = [self._written_job(w) for w in writes]
        return frozenset(
            i
            for i, (w, job) in enumerate(zip(writes, stored, strict=True))
            if job is None or any(self._taken(r) for r in w.records)
        )

    def create_slots(self, writes: Sequence[SlotWrite]) -> bool:
        items = sum(len(w.records) + 1 for w in writes)
        if not writes or any(not w.records for w in writes) or items > MAX_TX_ITEMS:
            raise ValueError(f"between 1 and {MAX_TX_ITEMS} items, and records for each job")
        if len({w.job.job_id for w in writes}) != len(writes):
            raise ValueError("one write per job")
        with self._lock:
            if self._refused(writes):
                return False
            stored = [self._written_job(w) for w in writes]
            for w, job in zip(writes, stored, strict=True):
                assert job is not None
                for record in w.records:
                    self._put_run(record)
                if w.unrecorded is not None:
                    job.unrecorded = list(w.unrecorded)
                if w.ledger:
                    continue
                self._advance(job, w.next_fire_at, w.expire, w.records[0].created)
                job.waiting_slots |= {r.slot for r in w.records if r.buffered and r.catchup}
            return True

    def _written_job(self, w: SlotWrite) -> Job | None:
        """The stored job, if the write's condition holds: still at its version (and, but
        for a ledger write, SCHEDULED)."""
        if w.ledger:
            stored = self.jobs.get(w.job.job_id)
            return stored if stored is not None and stored.version == w.job.version else None
        return self._scheduled_job(w.job)

    def _taken(self, record: Run) -> bool:
        """The record's slot is taken (for a missed slot's: by anything but the same)."""
        held = self.runs.get((record.job_id, record.slot))
        missed = ExStatus.missed
        return held is not None and not (record.status == missed and held.status == missed)

    def create_run(self, run: Run, limit: int | None = None) -> bool:
        if limit is not None:
            run.holds_slot = True
        with self._lock:
            if (run.job_id, run.slot) in self.runs:
                return False
            stored = self.jobs.get(run.job_id)
            if limit is not None:
                if stored is None or not self._has_room(stored, limit):
                    return False
                stored.active_slots.add(run.slot)
            self._put_run(run)
            return True

    def wait_for_slot(self, run: Run, check_at: float) -> bool:
        with self._lock:
            job = self.jobs.get(run.job_id)
            stored = self.runs.get((run.job_id, run.slot))
            if job is None or stored is None:
                return False
            if stored.status != ExStatus.pending or stored.holds_slot:
                return False
            if run.catchup:
                job.waiting_slots.add(run.slot)
            elif job.buffered_slot is None:
                job.buffered_slot = run.slot
            else:
                return False
            stored.buffered, stored.check_at, stored.catchup = True, check_at, run.catchup
            return True

    def acquire_buffered(self, run: Run, limit: int) -> bool:
        with self._lock:
            job = self.jobs.get(run.job_id)
            stored = self.runs.get((run.job_id, run.slot))
            if job is None or not self._has_room(job, limit):
                return False
            if run.catchup:
                turn = run.slot in job.waiting_slots and job.buffered_slot is None
            else:
                turn = job.buffered_slot == run.slot
            if not turn:
                return False
            if stored is None or stored.status != ExStatus.pending or not stored.buffered:
                return False
            job.active_slots.add(run.slot)
            if run.catchup:
                job.waiting_slots.discard(run.slot)
            else:
                job.buffered_slot = None
            stored.buffered, stored.holds_slot = False, True
            return True

    def get_run(self, job_id: str, slot: str) -> Run | None:
        return self._read(lambda: self.runs.get((job_id, slot)))

    def get_run_by_ex(self, ex_id: str) -> Run | None:
        return self._read(lambda: next((r for r in self.runs.values() if r.ex_id == ex_id), None))

    def _runs_of(self, job_id: str) -> list[Run]:
        return sorted((r for r in self.runs.values() if r.job_id == job_id), key=lambda r: r.slot)

    def list_runs(self, job_id: str, limit: int = 100, newest_first: bool = True) -> list[Run]:
        def runs() -> list[Run]:
            found = self._runs_of(job_id)
            return (found[::-1] if newest_first else found)[:limit]

        return self._read(runs)

    def latest_run_that_ran(self, job_id: str) -> Run | None:
        def latest() -> Run | None:
            ran = [r for r in self._runs_of(job_id) if r.status not in LEDGER_EX]
            return ran[-1] if ran else None

        return self._read(latest)

    def apply_run(self, run: Run, transition: RunTransition) -> Run | None:
        """Apply the transition to the stored run if its guard admits it; a terminal write
        of a run that holds a slot (the caller's view) also needs the stored run to hold
        it, and frees it, and one that takes a slot needs a free one, as the DynamoDB
        store's transactions do."""
        if not transition.sources:
            return None
        frees = transition.terminal and run.holds_slot
        with self._lock:
            stored = self.runs.get((run.job_id, run.slot))
            if stored is None or not transition.admits(stored, run):
                return None
            job = self.jobs.get(run.job_id)
            if frees and (not stored.holds_slot or job is None):
                return None
            if transition.acquire is not None and (
                job is None or not self._has_room(job, transition.acquire)
            ):
                return None
            if transition.acquire is not None and job is not None:
                job.active_slots.add(run.slot)
            self._apply(stored, transition)
            sets = dict(transition.sets)
            if sets.get("has_errors") is True and one_slice_error(run, sets):
                self._run_errors.add((run.job_id, run.slot))
            if frees and job is not None:
                stored.holds_slot = False
                job.active_slots.discard(run.slot)
            return copy.deepcopy(stored)

    def claim_runs_together(self, claims: Sequence[tuple[Run, RunTransition]]) -> list[Run] | None:
        """All the claims, or none, as the DynamoDB store's one transaction."""
        if len({run.job_id for run, _ in claims}) < len(claims):
            return None
        with self._lock:
            for run, transition in claims:
                stored = self.runs.get((run.job_id, run.slot))
                job = self.jobs.get(run.job_id)
                if (
                    transition.terminal
                    or not transition.sources
                    or stored is None
                    or not transition.admits(stored, run)
                    or (
                        transition.acquire is not None
                        and (job is None or not self._has_room(job, transition.acquire))
                    )
                ):
                    return None
            return [applied for run, t in claims if (applied := self.apply_run(run, t))]

    @staticmethod
    def _apply(stored: Run, transition: RunTransition) -> None:
        removes = ["check_at", "lease_token", "lease_expires_at"] if transition.terminal else []
        if transition.sets.get("notify_due"):  # on the sweep until its events are recorded
            removes = removes[1:]
        for name, value in transition.sets.items():
            if name not in RUN_FIELDS:
                raise ValueError(f"not a run field: {name}")
            if name not in removes:
                setattr(stored, name, run_field_default(name) if value is None else value)
        for name, amount in transition.adds.items():
            setattr(stored, name, (getattr(stored, name) or 0) + amount)
        for name in removes:
            setattr(stored, name, run_field_default(name))
        if transition.target is not None:
            stored.status = transition.target
        stored.status = ExStatus(stored.status)
        stored.result, stored.errors = as_json(stored.result), as_json(stored.errors) or []
        if transition.terminal:
            stored.tally_pending = True

    def stalled_runs(self, shard: int, now: float, limit: int = 100) -> list[Run]:
        def stalled() -> list[Run]:
            found = [
                r
                for r in self._on_sweep_index(shard)
                if r.check_at is not None and r.check_at <= now
            ]
            return found[:limit]

        return self._read(stalled)

    def _on_sweep_index(self, shard: int) -> list[Run]:
        found = [
            r
            for r in self.runs.values()
            if r.check_at is not None and due_shard(r.ex_id, self.settings.lease_shards) == shard
        ]
        return sorted(found, key=lambda r: (r.check_at, r.ex_id))

    def clear_notify_due(self, run: Run) -> bool:
        with self._lock:
            stored = self.runs.get((run.job_id, run.slot))
            if stored is None or stored.ex_id != run.ex_id or stored.notify_due is None:
                return False
            stored.notify_due = None
            if stored.status in TERMINAL_EX:
                stored.check_at = None
            return True

    def live_runs(self, limit: int = 1000) -> list[Run]:
        def live() -> list[Run]:
            out: list[Run] = []
            for shard in range(self.settings.lease_shards):
                found = self._on_sweep_index(shard)[:limit]
                out += [r for r in found if r.status not in TERMINAL_EX]
            return out[:limit]

        return self._read(live)
