"""Slices, leased; and the two repairs of a hanging run."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from chalicelib.domain.errors import Conflict
from chalicelib.domain.jobs import due_shard
from chalicelib.domain.runs import Run
from chalicelib.domain.slices import Slice, SliceEnding
from chalicelib.domain.transitions import ExStatus, SliceState
from chalicelib.ports import RepairStore, SliceStore
from tests.fakes.tables import ERROR_CHARS, LIVE_EX, MAX_TX_ITEMS, RESOLVED, Tables, as_json


class SlicesMixin(Tables, SliceStore, RepairStore):
    """Slices, leased; and the two repairs of a hanging run."""

    def put_slices(self, slices: Sequence[Slice]) -> int:
        with self._lock:
            new = 0
            for sl in slices:
                if (sl.ex_id, sl.slice_id) not in self.slices:
                    self._put_slice(sl)
                    new += 1
            return new

    def get_slice(self, ex_id: str, slice_id: str) -> Slice | None:
        return self._read(lambda: self.slices.get((ex_id, slice_id)))

    def list_slices(self, ex_id: str) -> list[Slice]:
        return self._read(
            lambda: sorted(
                (s for s in self.slices.values() if s.ex_id == ex_id), key=lambda s: s.slice_id
            )
        )

    def claim_slice(
        self, ex_id: str, slice_id: str, token: str, now: float, lease_until: float
    ) -> Slice | None:
        with self._lock:
            sl = self.slices.get((ex_id, slice_id))
            if sl is None:
                return None
            expired = (
                sl.state == SliceState.started
                and sl.lease_expires_at is not None
                and sl.lease_expires_at < now
            )
            if sl.state != SliceState.pending and not expired:
                return None
            sl.state, sl.lease_token, sl.lease_expires_at = SliceState.started, token, lease_until
            sl.attempts, sl.updated, sl.not_before = sl.attempts + 1, now, None
            return copy.deepcopy(sl)

    def release_slice(
        self, sl: Slice, token: str, not_before: float, error: str, now: float
    ) -> bool:
        with self._lock:
            stored = self.slices.get((sl.ex_id, sl.slice_id))
            if stored is None or stored.state != SliceState.started or stored.lease_token != token:
                return False
            stored.state, stored.not_before = SliceState.pending, not_before
            stored.error, stored.updated = error[:ERROR_CHARS], now
            stored.lease_token = stored.lease_expires_at = None
            return True

    def wait_slice(
        self, sl: Slice, token: str, check_at: float, wait: dict[str, Any], now: float
    ) -> bool:
        with self._lock:
            stored = self.slices.get((sl.ex_id, sl.slice_id))
            if stored is None or stored.state != SliceState.started or stored.lease_token != token:
                return False
            stored.state, stored.not_before, stored.wait = SliceState.pending, check_at, wait
            stored.attempts, stored.updated = stored.attempts - 1, now
            stored.lease_token = stored.lease_expires_at = None
            return True

    def finish_slice(self, sl: Slice, run: Run, ending: SliceEnding) -> bool:
        with self._lock:
            stored = self.slices.get((sl.ex_id, sl.slice_id))
            held = stored is not None and (
                stored.lease_expires_at == ending.expected_lease
                if ending.worker_lost
                else stored.lease_token == ending.token
            )
            owner = self.runs.get((run.job_id, run.slot))
            if stored is None or stored.state != SliceState.started or not held:
                return False
            if owner is None or owner.status not in LIVE_EX:
                return False
            self._finish(stored, ending)
            self._count_slice(owner, run, ending)
            return True

    @staticmethod
    def _finish(sl: Slice, ending: SliceEnding) -> None:
        sl.state = SliceState.completed if ending.completed else SliceState.error
        sl.updated, sl.lease_token, sl.lease_expires_at = ending.now, None, None
        if ending.completed:
            sl.error = None
            if ending.result is not None:
                sl.result = as_json(ending.result)
        else:
            sl.error = (ending.error or "error")[:ERROR_CHARS]

    @staticmethod
    def _count_slice(owner: Run, run: Run, ending: SliceEnding) -> None:
        if ending.completed:
            owner.processed += 1
        else:
            owner.failed += 1
            owner.has_errors = True
        owner.remaining -= 1
        owner.updated = ending.now
        owner.check_at = run.check_after(ending.now, ending.now + run.lease_seconds)
        if ending.worker_lost:
            owner.workers_lost += 1

    def resolve_complete(self, run: Run, open_slices: Sequence[Slice], now: float) -> bool:
        if len(open_slices) > MAX_TX_ITEMS - 2:
            raise Conflict(
                f"{len(open_slices)} open slices: more than one transaction can hold",
                ex_id=run.ex_id,
            )
        open_states = (SliceState.pending, SliceState.started)
        with self._lock:
            stored = self.runs.get((run.job_id, run.slot))
            if stored is None or stored.ex_id != run.ex_id or stored.status not in LIVE_EX:
                return False
            slices = [self.slices.get((s.ex_id, s.slice_id)) for s in open_slices]
            if any(s is None or s.state not in open_states for s in slices):
                return False
            job = self.jobs.get(run.job_id)
            if run.holds_slot and job is None:
                return False
            self._resolved(stored, run, now)
            for sl in slices:
                assert sl is not None
                sl.state, sl.updated, sl.error = SliceState.completed, now, RESOLVED
                sl.lease_token = sl.lease_expires_at = None
            if run.holds_slot and job is not None:
                job.active_slots.discard(run.slot)
            return True

    @staticmethod
    def _resolved(stored: Run, run: Run, now: float) -> None:
        stored.status = ExStatus.completed
        stored.processed = run.slices_total - run.failed if run.slices_total else 1
        stored.remaining, stored.finished_at, stored.updated = 0, now, now
        stored.reason, stored.holds_slot, stored.tally_pending = RESOLVED, False, True
        stored.check_at = stored.lease_token = stored.lease_expires_at = None

    def reset_run(self, run: Run, fresh: Run, slices: Sequence[Slice], limit: int | None) -> bool:
        if len(slices) > MAX_TX_ITEMS - 2:
            raise Conflict(
                f"{len(slices)} slices: more than one transaction can delete", ex_id=run.ex_id
            )
        takes_slot = limit is not None and not run.holds_slot
        fresh.holds_slot = limit is not None
        with self._lock:
            stored = self.runs.get((run.job_id, run.slot))
            if stored is None or stored.ex_id != run.ex_id:
                return False
            if stored.tally_pending != run.tally_pending:
                return False
            job = self.jobs.get(run.job_id)
            if takes_slot and (job is None or limit is None or not self._has_room(job, limit)):
                return False
            self._put_run(fresh)
            if run.tally_pending:
                self._add_to_counters(due_shard(run.ex_id, self.settings.stats_shards), run)
            for sl in slices:
                self.slices.pop((sl.ex_id, sl.slice_id), None)
            if takes_slot and job is not None:
                job.active_slots.add(run.slot)
            return True
