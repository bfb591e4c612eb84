"""Run history and job listings: OpenSpecimen's scheduled-job runs and Apache Lens' stats.

`HistoryService` answers what the `/scheduled-jobs` routes ask, from the store's index
queries only (never a scan):

- the jobs, newest first, all of them or one owner's, optionally in one schedule state
  (only the caller's own unless it is an admin: another owner's listing is empty);
- a job's runs created in a time window, newest first (OpenSpecimen lists a job's runs
  newest first), optionally of one status, a page at a time;
- counts of runs by status for one job (Lens `getJobStats(job, state, start, end)`) and
  for every job of a user (`getAllJobStats(user, state, start, end)`).

Request values are read here, in OpenSpecimen's forms (`chalicelib.domain.history`):
`fromDate` / `toDate` are `20220221` (that day, 00:00 UTC) or `20220221T061500` (that
instant, UTC); fromDate defaults to the earliest instant and toDate to now (the injected
clock); both ends are inclusive and compare with the run's creation time. `status` is
IN_PROGRESS (every non-terminal execution status), SUCCEEDED (`completed`), FAILED
(`failed`, `rejected`, `terminated`, `stopped`), or the ledger's SKIPPED / MISSED; the
ledger's records are slots that never ran, so no OpenSpecimen status selects them, and a
listing without a status includes them. Anything else is InvalidInput naming the field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from chalicelib.domain.errors import NotFound
from chalicelib.domain.history import (
    GROUP_STATUSES,
    RunCounts,
    Window,
    parse_group,
    parse_state,
)
from chalicelib.domain.identity import SYSTEM, Principal, owner_of
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import JobState
from chalicelib.ports import Clock, Page, Store


@dataclass(frozen=True)
class JobStats:
    """Runs of one job created in a window, counted by status."""

    job: Job
    window: Window
    counts: RunCounts
    state: JobState | None = None


@dataclass(frozen=True)
class UserStats:
    """One page of a user's jobs (every job's when no user), each with its JobStats."""

    user: str | None
    state: JobState | None
    window: Window
    jobs: list[JobStats]
    next: str | None


class HistoryService:
    """Read-only queries over jobs and their runs (see the module docstring)."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock
        self.who = SYSTEM

    def as_(self, who: Principal) -> HistoryService:
        """The same reads on behalf of `who`: only its own jobs and runs unless an admin."""
        scoped = copy.copy(self)
        scoped.who = who
        return scoped

    def _others(self, owner: str | None) -> bool:
        """Whether a listing asks for jobs the caller may not see (another owner's)."""
        return not self.who.is_admin and owner not in (None, "", self.who.id)

    def _owner(self, owner: str | None) -> str | None:
        """Whose jobs a listing reads: as asked for an admin (None: everyone's), else the
        caller's own."""
        return (owner or None) if self.who.is_admin else self.who.id

    # ---- jobs ------------------------------------------------------------------------------
    def job(self, job_id: str) -> Job:
        job = self.store.get_job(job_id)
        if job is None or job.deleted or not self.who.sees(owner_of(job.definition)):
            raise NotFound(f"job {job_id} not found", job_id=job_id)
        return job

    def jobs(
        self,
        owner: str | None,
        state: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Job], str | None]:
        """A page of jobs, newest first: one owner's (the owner index) or everyone's (the
        list index), only those in schedule state `state` when given."""
        wanted = parse_state(state)
        if self._others(owner):
            return [], None
        whose = self._owner(owner)
        if whose:
            return self.store.jobs_by_owner(whose, Page(limit, cursor), wanted)
        return self.store.list_jobs(Page(limit, cursor), wanted)

    # ---- runs ------------------------------------------------------------------------------
    def window(self, from_date: str | None, to_date: str | None) -> Window:
        return Window.parse(from_date, to_date, self.clock.now())

    def runs(
        self,
        job_id: str,
        *,
        from_date: str | None = None,
        to_date: str | None = None,
        status: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[Run], str | None]:
        """A page of the job's runs created in the window, newest first, of one status
        when given; NotFound for an unknown job."""
        window = self.window(from_date, to_date)
        group = parse_group(status)
        self.job(job_id)
        statuses = None if group is None else GROUP_STATUSES[group]
        return self.store.runs_created_between(
            job_id, window.lo, window.hi, statuses, Page(limit, cursor)
        )

    def run(self, job_id: str, run_id: str) -> Run:
        """One run of a job by its id (the ex_id)."""
        run = self.store.get_run_by_ex(run_id)
        if run is None or run.job_id != job_id or not self.who.sees(owner_of(run.config)):
            self.job(job_id)
            raise NotFound(f"run {run_id} of job {job_id} not found", job_id=job_id)
        return run

    # ---- stats (Lens) ----------------------------------------------------------------------
    def job_stats(
        self,
        job_id: str,
        *,
        from_date: str | None = None,
        to_date: str | None = None,
        state: str | None = None,
    ) -> JobStats:
        """Lens getJobStats: the job's runs created in the window, counted by status; none
        when `state` is given and the job is not in it."""
        window = self.window(from_date, to_date)
        wanted = parse_state(state)
        job = self.job(job_id)
        return self._stats(job, window, wanted)

    def user_stats(
        self,
        user: str | None,
        *,
        state: str | None = None,
        from_date: str | None = None,
        to_date: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> UserStats:
        """Lens getAllJobStats: per job of the user (every job when no user), newest job
        first and only jobs in `state` when given, its runs in the window counted by
        status; a page of jobs at a time, so one request reads a bounded number of jobs."""
        window = self.window(from_date, to_date)
        wanted = parse_state(state)
        if self._others(user):
            return UserStats(user, wanted, window, [], None)
        whose = self._owner(user)
        if whose:
            jobs, nxt = self.store.jobs_by_owner(whose, Page(limit, cursor), wanted)
        else:
            jobs, nxt = self.store.list_jobs(Page(limit, cursor), wanted)
        stats = [self._stats(job, window, wanted) for job in jobs]
        return UserStats(whose, wanted, window, stats, nxt)

    def _stats(self, job: Job, window: Window, state: JobState | None) -> JobStats:
        if state is not None and job.state != state:
            return JobStats(job, window, RunCounts(), state)
        counts = self.store.count_runs_by_status(job.job_id, window.lo, window.hi)
        return JobStats(job, window, RunCounts(counts), state)
