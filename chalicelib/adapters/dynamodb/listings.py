"""The listing read side (Teraslice's GET /v1/jobs, /v1/ex, /v1/ex/errors): windows of
jobs, runs and errors in a sort order, from the sharded listing indexes.

Each reads one index per partition (a shard, for runs also a status) lazily, in the asked
order, and merges them (paging.merged_window): a Query per partition and only as many
items as the window needs, never a Scan. One owner's window filters jobs on the index query;
runs and slices (whose owner is in their run's copy of the job definition) are filtered as
they stream, before the window is cut."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from pynamodb.expressions.condition import Condition
from pynamodb.indexes import Index

from chalicelib.adapters.dynamodb.base import StoreBase
from chalicelib.adapters.dynamodb.jobs import to_job
from chalicelib.adapters.dynamodb.models import M, RunModel, SliceModel
from chalicelib.adapters.dynamodb.paging import merged_window
from chalicelib.adapters.dynamodb.run_items import to_run
from chalicelib.adapters.dynamodb.slices import to_slice
from chalicelib.domain.identity import owner_of
from chalicelib.domain.jobs import Job
from chalicelib.domain.runs import Run
from chalicelib.domain.slices import Slice
from chalicelib.domain.transitions import ExStatus
from chalicelib.ports import Sort

LIST_CONCURRENCY = 16  # partitions of a listing read at once


def _only(streams: list[Iterator[M]], keep: Callable[[M], bool] | None) -> list[Iterator[M]]:
    return streams if keep is None else [(m for m in s if keep(m)) for s in streams]


def _run_owner(m: RunModel) -> str:
    return owner_of(m.config or {})


class ListingReads(StoreBase):
    def _streams(
        self,
        index: Index[M],
        parts: Iterable[str | int],
        ascending: bool,
        window: int,
        filt: Condition | None = None,
    ) -> list[Iterator[M]]:
        page = min(window, 1000) + 1
        streams = [
            iter(
                index.query(
                    part,
                    filter_condition=filt,
                    scan_index_forward=ascending,
                    page_size=page,
                )
            )
            for part in parts
        ]
        if len(streams) <= 1:
            return streams
        # the merge needs every partition's first item: read the first pages side by side
        with ThreadPoolExecutor(min(LIST_CONCURRENCY, len(streams))) as pool:
            firsts = list(pool.map(lambda it: next(it, None), streams))
        return [
            itertools.chain([first], it) if first is not None else iter(())
            for first, it in zip(firsts, streams, strict=True)
        ]

    def job_window(
        self,
        deleted: bool,
        active: bool | None,
        sort: Sort,
        start: int,
        size: int,
        owner: str | None = None,
    ) -> list[Job]:
        J = self.m.job
        index = J.jobs_created_index if sort.field == "created" else J.jobs_updated_index
        filt: Condition | None = None if owner is None else J.owner == owner
        if active is not None:
            is_set: Condition = J.active == active
            wanted = (J.active.does_not_exist() | is_set) if active else is_set
            filt = wanted if filt is None else filt & wanted
        flag = "deleted" if deleted else "live"
        parts = [f"{flag}#{n}" for n in range(self.settings.list_shards)]

        def read() -> list[Job]:
            streams = self._streams(index, parts, sort.ascending, start + size, filt)
            found = merged_window(
                streams, lambda m: (getattr(m, sort.field), m.job_id), start, size, sort.ascending
            )
            return [to_job(m) for m in found]

        return self._get(read)

    def run_window(
        self,
        statuses: Iterable[ExStatus],
        deleted: bool,
        sort: Sort,
        start: int,
        size: int,
        owner: str | None = None,
    ) -> list[Run]:
        R = self.m.run
        index = R.ex_created_index if sort.field == "created" else R.ex_updated_index
        flag = "deleted" if deleted else "live"
        parts = [
            f"{status}#{flag}#{n}"
            for status in sorted(set(statuses))
            for n in range(self.settings.list_shards)
        ]

        def read() -> list[Run]:
            streams = self._streams(index, parts, sort.ascending, start + size)
            keep = None if owner is None else (lambda m: _run_owner(m) == owner)
            found = merged_window(
                _only(streams, keep),
                lambda m: (getattr(m, sort.field), m.ex_id),
                start,
                size,
                sort.ascending,
            )
            return [to_run(m) for m in self._whole_runs(found)]

        return self._get(read)

    def _owned(self, owner: str | None) -> Callable[[SliceModel | RunModel], bool] | None:
        """Whether an error (a failed slice, or a run) belongs to `owner`'s jobs: a slice's
        owner is read off its run (the ex_id index), once per execution."""
        if owner is None:
            return None
        owners: dict[str, str] = {}

        def keep(m: SliceModel | RunModel) -> bool:
            if isinstance(m, RunModel):
                return _run_owner(m) == owner
            if m.ex_id not in owners:
                runs = list(self.m.run.ex_index.query(m.ex_id, limit=1))
                owners[m.ex_id] = _run_owner(runs[0]) if runs else ""
            return owners[m.ex_id] == owner

        return keep

    def error_window(
        self, sort: Sort, start: int, size: int, owner: str | None = None
    ) -> list[Slice | Run]:
        R, S = self.m.run, self.m.slice
        created = sort.field == "created"
        slice_index = S.errors_created_index if created else S.errors_updated_index
        run_index = R.errors_created_index if created else R.errors_updated_index
        shards = range(self.settings.list_shards)

        def key(m: SliceModel | RunModel) -> tuple[float, str, str]:
            return (getattr(m, sort.field), m.ex_id, getattr(m, "slice_id", ""))

        def read() -> list[Slice | Run]:
            window = start + size
            streams: list[Iterator[SliceModel | RunModel]] = [
                *self._streams(slice_index, shards, sort.ascending, window),
                *self._streams(run_index, shards, sort.ascending, window),
            ]
            found = merged_window(
                _only(streams, self._owned(owner)), key, start, size, sort.ascending
            )
            return [to_slice(m) if isinstance(m, SliceModel) else to_run(m) for m in found]

        return self._get(read)
