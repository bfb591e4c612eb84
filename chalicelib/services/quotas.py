"""Owners' quotas (jobs; on-demand runs active at once): taken by a conditional write on
the owner's quota record, so racing requests cannot pass a limit together; given back when
a job is deleted, and, lazily, when a taken quota finds the owner at its limit: members
whose job is deleted or whose run has ended are released then, and the take tried again."""

from __future__ import annotations

from chalicelib.domain.limits import (
    JOBS,
    QUOTA_GRACE_SECONDS,
    RUNS,
    owner_limit_reached,
    quota_key,
    quota_member,
    run_key,
)
from chalicelib.domain.transitions import TERMINAL_EX
from chalicelib.ports import Store


class Quotas:
    """The quotas of one store, at one instant."""

    def __init__(self, store: Store, now: float) -> None:
        self.store, self.now = store, now

    def _never_written(self, taken: float) -> bool:
        """A member without a record, past the time its record could still be written."""
        return self.now - taken > QUOTA_GRACE_SECONDS

    def _ended(self, kind: str, member: str) -> bool:
        """Whether a member no longer counts: its job is deleted or its run has ended."""
        key, taken = quota_key(member)
        if kind == JOBS:
            job = self.store.get_job(key)
            return job.deleted if job is not None else self._never_written(taken)
        job_id, _, slot = key.partition("|")
        run = self.store.get_run(job_id, slot)
        return run.status in TERMINAL_EX if run is not None else self._never_written(taken)

    def take(self, owner: str, kind: str, key: str, limit: int) -> str:
        """Take one of the owner's `limit` for `key` (a job id; a run's `job_id|slot`) and
        return the member to give back; OwnerLimitReached (429) if the owner is at it."""
        member = quota_member(key, self.now)
        if self.store.take_quota(owner, kind, member, limit):
            return member
        stale = [m for m in self.store.quota_members(owner, kind) if self._ended(kind, m)]
        if stale:
            self.store.release_quota(owner, kind, stale)
            if self.store.take_quota(owner, kind, member, limit):
                return member
        raise owner_limit_reached(kind, limit)

    def take_run(self, owner: str, job_id: str, slot: str, limit: int) -> str:
        return self.take(owner, RUNS, run_key(job_id, slot), limit)

    def give_back(self, owner: str, kind: str, member: str) -> None:
        self.store.release_quota(owner, kind, [member])

    def give_back_job(self, owner: str, job_id: str) -> None:
        """A deleted job's quota (whenever it was taken)."""
        held = self.store.quota_members(owner, JOBS)
        self.store.release_quota(owner, JOBS, [m for m in held if quota_key(m)[0] == job_id])
