"""The history read side (OpenSpecimen's runs and jobs, Lens stats): a job's runs, newest
first or in a time window, counted by status, and jobs page by page.

Every one is a Query on a table or an index (never a Scan), paged with an opaque token
that is checked against the listing before it becomes the ExclusiveStartKey (paging.py)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pynamodb.expressions.condition import Condition
from pynamodb.indexes import Index

from chalicelib.adapters.dynamodb.base import StoreBase
from chalicelib.adapters.dynamodb.jobs import to_job
from chalicelib.adapters.dynamodb.models import JobModel, RunModel
from chalicelib.adapters.dynamodb.paging import Key, decode_cursor, encode_cursor, take_page
from chalicelib.adapters.dynamodb.run_items import to_run
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Run
from chalicelib.domain.timefmt import slot_key
from chalicelib.domain.transitions import EX_MACHINE, LEDGER_EX, ExStatus, JobState
from chalicelib.ports import FIRST_PAGE, Page, RunStore

# How long a run may take to reach the job-created index (a global index is eventually
# consistent; DynamoDB's lag is usually well under a second): the history reads take the
# runs created in the last FRESH_SECONDS of their window from the table itself.
FRESH_SECONDS = 10.0


def _position(m: RunModel) -> tuple[float, str]:
    return float(m.created), m.slot


@dataclass(frozen=True)
class _Span:
    """A history read's window, its statuses (None: all) and where its page starts."""

    lo: float | None
    hi: float | None
    wanted: set[str] | None
    start: Key | None

    def holds(self, m: RunModel) -> bool:
        """Whether `m` was created in the window and lies after the page's start (a start
        only comes with an oldest-first page: the newest end is its last)."""
        created = float(m.created)
        if (self.lo is not None and created < self.lo) or (
            self.hi is not None and created > self.hi
        ):
            return False
        if self.start is None:
            return True
        return created > float(self.start["created"]["N"])


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

    def _fresh(self, job_id: str, span: _Span) -> list[RunModel]:
        """The job's runs created in the last FRESH_SECONDS before the window's end, read
        from the table (strongly consistent): a run's slot is never before its creation
        but for catch-up runs and ledger records, so they are the runs from that slot on."""
        if span.hi is None:
            return []
        R = self.m.run
        since = slot_key(span.hi - FRESH_SECONDS)
        found = R.query(job_id, R.slot >= since, consistent_read=True)
        return [m for m in found if span.holds(m)]

    def _freshened(
        self, job_id: str, items: list[RunModel], resume: Key | None, span: _Span, page: Page
    ) -> tuple[list[RunModel], Key | None]:
        """The index's page at the window's newest end with the table's copies of its newest
        runs (their current status) and the newest runs the index does not hold yet, put
        in their places, cut to the page's size, and the key to resume after its last run.
        The index's order is kept (runs created at the same instant keep the index's
        order, which page tokens follow); a run the index lacks goes after the runs created
        at the same instant, and only before the page's last run (a run past it is on a
        later page, read from the index by then)."""
        fresh = {m.slot: m for m in self._fresh(job_id, span)}
        if not fresh:
            return items, resume
        listed = {m.slot for m in items}
        merged = [fresh.get(m.slot, m) for m in items]
        missing = [m for slot, m in fresh.items() if slot not in listed]
        if resume is not None and items:
            edge = float(items[-1].created)
            missing = [m for m in missing if (m.created > edge) == page.newest_first]
            missing = [m for m in missing if float(m.created) != edge]
        merged += sorted(missing, key=_position, reverse=page.newest_first)
        merged = [m for m in merged if span.wanted is None or m.status in span.wanted]
        merged.sort(key=lambda m: float(m.created), reverse=page.newest_first)  # stable
        if len(merged) <= page.limit and resume is None:
            return merged, None
        kept = merged[: page.limit]
        if not kept:
            return kept, resume
        last = kept[-1]
        key = {"job_id": {"S": last.job_id}, "slot": {"S": last.slot}}
        return kept, {**key, "created": {"N": str(last.created)}}

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
                page_size=limit + 1,
                last_evaluated_key=start,
            )
            copies, resume = take_page(it, limit)
            items = [m for m in self._whole_runs(copies) if not wanted or m.status in wanted]
            if start is None if page.newest_first else resume is None:
                # the page at the window's newest end: the index may not hold the newest runs
                span = _Span(lo, hi, None if wanted is None else set(wanted), start)
                items, resume = self._freshened(job_id, items, resume, span, page)
            return [to_run(m) for m in items], encode_cursor(resume)

        return self._get(query)

    def count_runs_by_status(
        self, job_id: str, lo: float | None, hi: float | None
    ) -> dict[ExStatus, int]:
        R = self.m.run
        if lo is not None and hi is not None and lo > hi:
            return {}

        def count() -> dict[ExStatus, int]:
            statuses = {
                m.slot: m.status
                for m in R.created_index.query(
                    job_id, self._created_condition(lo, hi), attributes_to_get=["slot", "status"]
                )
            }
            span = _Span(lo, hi, None, None)
            statuses.update({m.slot: m.status for m in self._fresh(job_id, span)})
            counts: dict[ExStatus, int] = {}
            for status in map(ExStatus, statuses.values()):
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
