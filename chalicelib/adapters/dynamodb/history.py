"""The history read side (OpenSpecimen's runs and jobs, Lens stats): a job's runs, newest
first or in a time window, counted by status, and jobs page by page.

Every one is a Query on a table or an index (never a Scan), paged with an opaque token
that is checked against the listing before it becomes the ExclusiveStartKey (paging.py)."""

from __future__ import annotations

from collections.abc import Iterable

from pynamodb.expressions.condition import Condition
from pynamodb.indexes import Index

from chalicelib.adapters.dynamodb.base import StoreBase
from chalicelib.adapters.dynamodb.jobs import to_job
from chalicelib.adapters.dynamodb.models import JobModel
from chalicelib.adapters.dynamodb.paging import Key, decode_cursor, encode_cursor, take_page
from chalicelib.adapters.dynamodb.run_items import to_run
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Run
from chalicelib.domain.transitions import EX_MACHINE, LEDGER_EX, ExStatus, JobState
from chalicelib.ports import FIRST_PAGE, Page, RunStore


class HistoryReads(StoreBase, RunStore):
    """The history reads of RunStore, and JobStore's pages of jobs."""

    def list_runs(self, job_id: str, limit: int = 100, newest_first: bool = True) -> list[Run]:
        R = self.m.run
        return self._get(
            lambda: [
                to_run(m)
                for m in R.query(
                    job_id, scan_index_forward=not newest_first, limit=limit, consistent_read=True
                )
            ]
        )

    def latest_run_that_ran(self, job_id: str) -> Run | None:
        R = self.m.run
        ran = [str(s) for s in EX_MACHINE.states - LEDGER_EX]
        # the filter runs server-side, a page of 50 slots at a time, until one run passes
        found = self._get(
            lambda: list(
                R.query(
                    job_id,
                    scan_index_forward=False,
                    filter_condition=R.status.is_in(*ran),
                    limit=1,
                    page_size=50,
                    consistent_read=True,
                )
            )
        )
        return to_run(found[0]) if found else None

    _RUN_CURSOR_KEYS = frozenset({"job_id", "slot", "created"})
    _LIST_CURSOR_KEYS = frozenset({"job_id", "list_key", "created"})
    _OWNER_CURSOR_KEYS = frozenset({"job_id", "owner", "created"})
    LIST_KEY = "job"

    def _created_condition(self, lo: float | None, hi: float | None) -> Condition | None:
        R = self.m.run
        if lo is not None and hi is not None:
            return R.created.between(lo, hi)
        if lo is not None:
            return R.created >= lo
        if hi is not None:
            return R.created <= hi
        return None

    def runs_created_between(
        self,
        job_id: str,
        lo: float | None,
        hi: float | None,
        statuses: Iterable[ExStatus] | None = None,
        page: Page = FIRST_PAGE,
    ) -> tuple[list[Run], str | None]:
        R = self.m.run
        wanted = None if statuses is None else sorted({str(s) for s in statuses})
        limit = page.limit
        start = decode_cursor(
            page.cursor,
            names=self._RUN_CURSOR_KEYS,
            fixed={"job_id": job_id},
            number="created",
            lo=lo,
            hi=hi,
        )
        if limit < 1 or wanted == [] or (lo is not None and hi is not None and lo > hi):
            return [], None

        def query() -> tuple[list[Run], str | None]:
            it = R.created_index.query(
                job_id,
                self._created_condition(lo, hi),
                filter_condition=R.status.is_in(*wanted) if wanted else None,
                scan_index_forward=not page.newest_first,
                consistent_read=True,
                page_size=limit + 1,
                last_evaluated_key=start,
            )
            items, resume = take_page(it, limit)
            return [to_run(m) for m in items], encode_cursor(resume)

        return self._get(query)

    def count_runs_by_status(
        self, job_id: str, lo: float | None, hi: float | None
    ) -> dict[ExStatus, int]:
        R = self.m.run
        if lo is not None and hi is not None and lo > hi:
            return {}

        def count() -> dict[ExStatus, int]:
            counts: dict[ExStatus, int] = {}
            for m in R.created_index.query(
                job_id,
                self._created_condition(lo, hi),
                consistent_read=True,
                attributes_to_get=["status"],
            ):
                status = ExStatus(m.status)
                counts[status] = counts.get(status, 0) + 1
            return counts

        return self._get(count)

    def _job_filter(self, state: JobState | None) -> Condition:
        J = self.m.job
        cond = J.deleted == False  # noqa: E712 (a DynamoDB condition)
        if state is not None:
            cond &= J.state == str(state)
        return cond

    def _job_page(
        self,
        index: Index[JobModel],
        hash_key: str,
        start: Key | None,
        page: Page,
        state: JobState | None,
    ) -> tuple[list[Job], str | None]:
        if page.limit < 1:
            return [], None

        def query() -> tuple[list[Job], str | None]:
            it = index.query(
                hash_key,
                filter_condition=self._job_filter(state),
                scan_index_forward=not page.newest_first,
                page_size=page.limit + 1,
                last_evaluated_key=start,
            )
            items, resume = take_page(it, page.limit)
            return [to_job(m) for m in items], encode_cursor(resume)

        return self._get(query)

    def list_jobs(
        self, page: Page = FIRST_PAGE, state: JobState | None = None
    ) -> tuple[list[Job], str | None]:
        start = decode_cursor(
            page.cursor, names=self._LIST_CURSOR_KEYS, fixed={"list_key": self.LIST_KEY}
        )
        return self._job_page(self.m.job.list_index, self.LIST_KEY, start, page, state)

    def jobs_by_owner(
        self, owner: str, page: Page = FIRST_PAGE, state: JobState | None = None
    ) -> tuple[list[Job], str | None]:
        start = decode_cursor(page.cursor, names=self._OWNER_CURSOR_KEYS, fixed={"owner": owner})
        return self._job_page(self.m.job.owner_index, owner, start, page, state)
