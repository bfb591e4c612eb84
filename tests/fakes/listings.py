"""The read side: listings, windows and history, derived from the records, paged with
tokens checked as DynamoStore checks them."""

from __future__ import annotations

import copy
from collections.abc import Iterable

from chalicelib.adapters.dynamodb.paging import decode_cursor, encode_cursor
from chalicelib.domain.identity import owner_of
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Run
from chalicelib.domain.slices import Slice
from chalicelib.domain.transitions import ExStatus, JobState, SliceState
from chalicelib.ports import FIRST_PAGE, JobStore, Page, RunStore, Sort
from tests.fakes.tables import (
    LIST_CURSOR,
    LIST_KEY,
    OWNER_CURSOR,
    RUN_CURSOR,
    Tables,
    indexed,
    page_of,
    window_of,
)


class ListingsMixin(Tables, JobStore, RunStore):
    """The read side: listings, windows and history, derived from the records, paged with"""

    def _listed_jobs(self, owner: str | None, state: JobState | None) -> list[Job]:
        return [
            j
            for j in self.jobs.values()
            if not j.deleted
            and (state is None or j.state == state)
            and (owner is None or str(j.definition.get("owner", "anonymous")) == owner)
        ]

    def _job_page(
        self, jobs: list[Job], after: tuple[float, str] | None, page: Page
    ) -> tuple[list[Job], Job | None]:
        if page.limit < 1:
            return [], None
        return page_of(jobs, lambda j: (j.created, j.job_id), after, page.limit, page.newest_first)

    @staticmethod
    def _after(key: dict[str, dict[str, str]] | None) -> tuple[float, str] | None:
        if key is None:
            return None
        return float(key["created"]["N"]), key["job_id"]["S"]

    def list_jobs(
        self, page: Page = FIRST_PAGE, state: JobState | None = None
    ) -> tuple[list[Job], str | None]:
        start = decode_cursor(page.cursor, names=LIST_CURSOR, fixed={"list_key": LIST_KEY})
        with self._lock:
            found, last = self._job_page(self._listed_jobs(None, state), self._after(start), page)
            token = None if last is None else self._job_token(last, "list_key", LIST_KEY)
            return indexed(found), token

    def jobs_by_owner(
        self, owner: str, page: Page = FIRST_PAGE, state: JobState | None = None
    ) -> tuple[list[Job], str | None]:
        start = decode_cursor(page.cursor, names=OWNER_CURSOR, fixed={"owner": owner})
        with self._lock:
            found, last = self._job_page(self._listed_jobs(owner, state), self._after(start), page)
            token = None if last is None else self._job_token(last, "owner", owner)
            return indexed(found), token

    @staticmethod
    def _job_token(job: Job, part: str, value: str) -> str | None:
        return encode_cursor(
            {"job_id": {"S": job.job_id}, part: {"S": value}, "created": {"N": str(job.created)}}
        )

    def job_window(
        self,
        deleted: bool,
        active: bool | None,
        sort: Sort,
        start: int,
        size: int,
        owner: str | None = None,
    ) -> list[Job]:
        def window() -> list[Job]:
            found = [
                j
                for j in self.jobs.values()
                if j.deleted == deleted
                and (active is None or j.active == active)
                and owner in (None, owner_of(j.definition))
            ]
            jobs = window_of(found, lambda j: (getattr(j, sort.field), j.job_id), sort, start, size)
            return indexed(jobs)

        return self._read(window)

    def run_window(
        self,
        statuses: Iterable[ExStatus],
        deleted: bool,
        sort: Sort,
        start: int,
        size: int,
        owner: str | None = None,
    ) -> list[Run]:
        wanted = set(statuses)

        def window() -> list[Run]:
            found = [
                r
                for r in self.runs.values()
                if r.status in wanted
                and r.deleted == deleted
                and owner in (None, owner_of(r.config))
            ]
            return window_of(found, lambda r: (getattr(r, sort.field), r.ex_id), sort, start, size)

        return self._read(window)

    def error_window(
        self, sort: Sort, start: int, size: int, owner: str | None = None
    ) -> list[Slice | Run]:
        def key(item: Slice | Run) -> tuple[float, str, str]:
            return (getattr(item, sort.field), item.ex_id, getattr(item, "slice_id", ""))

        def window() -> list[Slice | Run]:
            owners = {r.ex_id: owner_of(r.config) for r in self.runs.values()}
            found: list[Slice | Run] = [
                s for s in self.slices.values() if s.state == SliceState.error
            ]
            found += [self.runs[k] for k in self._run_errors if k in self.runs]
            found = [i for i in found if owner in (None, owners.get(i.ex_id))]
            return window_of(found, key, sort, start, size)

        return self._read(window)

    @staticmethod
    def _created_in(run: Run, lo: float | None, hi: float | None) -> bool:
        return (lo is None or run.created >= lo) and (hi is None or run.created <= hi)

    def runs_created_between(
        self,
        job_id: str,
        lo: float | None,
        hi: float | None,
        statuses: Iterable[ExStatus] | None = None,
        page: Page = FIRST_PAGE,
    ) -> tuple[list[Run], str | None]:
        wanted = None if statuses is None else {str(s) for s in statuses}
        start = decode_cursor(
            page.cursor, names=RUN_CURSOR, fixed={"job_id": job_id}, number="created", lo=lo, hi=hi
        )
        if page.limit < 1 or wanted == set() or (lo is not None and hi is not None and lo > hi):
            return [], None
        after = None if start is None else (float(start["created"]["N"]), start["slot"]["S"])
        with self._lock:
            found = [
                r
                for r in self.runs.values()
                if r.job_id == job_id
                and self._created_in(r, lo, hi)
                and (wanted is None or str(r.status) in wanted)
            ]
            runs, last = page_of(
                found, lambda r: (r.created, r.slot), after, page.limit, page.newest_first
            )
            return copy.deepcopy(runs), None if last is None else self._run_token(last)

    @staticmethod
    def _run_token(run: Run) -> str | None:
        return encode_cursor(
            {
                "job_id": {"S": run.job_id},
                "slot": {"S": run.slot},
                "created": {"N": str(run.created)},
            }
        )

    def count_runs_by_status(
        self, job_id: str, lo: float | None, hi: float | None
    ) -> dict[ExStatus, int]:
        with self._lock:
            counts: dict[ExStatus, int] = {}
            for r in self.runs.values():
                if r.job_id == job_id and self._created_in(r, lo, hi):
                    counts[r.status] = counts.get(r.status, 0) + 1
            return counts
