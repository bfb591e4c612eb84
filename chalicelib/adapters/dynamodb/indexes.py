"""The secondary indexes of the tables (models.py): each a class generic in the model it
indexes (the model declares `index: SomeIndex[ItsModel]`), so a query on it returns that
model."""

# mypy: disallow-untyped-calls=False
# (PynamoDB's Index.__init_subclass__, which every index class calls, is untyped upstream)

from __future__ import annotations

from typing import TypeVar

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.indexes import (
    AllProjection,
    GlobalSecondaryIndex,
    IncludeProjection,
)
from pynamodb.models import Model

M = TypeVar("M", bound=Model)
# What the jobs' indexes project of a job: all a Job is read from but its slot sets
# (`active_slots`, `buffered_slot`, `waiting_slots`), which change at every start and end
# of a run: DynamoDB writes an index only when a key or a projected attribute changes, so
# taking or freeing a slot writes the job item alone. Neither the tick nor a listing reads
# the slot sets (get_job does). `owner` is there for the listings' owner filter.
JOB_LISTED = (
    "active",
    "anchor",
    "created",
    "definition",
    "deleted",
    "deleted_on",
    "next_fire_at",
    "owner",
    "resumed_at",
    "state",
    "suspended_at",
    "unrecorded",
    "updated",
    "version",
)
JOB_SLOT_SETS = ("active_slots", "buffered_slot", "waiting_slots")


def _job_listed(*keys: str) -> IncludeProjection:
    """JOB_LISTED but the index's own keys (always projected)."""
    return IncludeProjection([a for a in JOB_LISTED if a not in keys])


# What the runs' listing indexes project of a run besides the keys: what a listing merges
# its partitions by (`ex_id`) and filters them on (`config`, the owner); neither changes
# as a run goes on. The window's runs are read from the table (one BatchGetItem), a cold
# path: a listing, never the start or the tick.
RUN_LISTED = ("config", "ex_id")
# What the tally index projects of an ended run: all a fold adds to the cluster counters.
TALLIED = ("failed", "finished_at", "processed", "started_at", "workers", "workers_lost")


class DueIndex(GlobalSecondaryIndex[M]):
    """Sparse: only SCHEDULED jobs carry due_shard and next_fire_at."""

    class Meta:
        index_name = "due-index-v2"
        projection = _job_listed("due_shard", "next_fire_at")

    due_shard = NumberAttribute(hash_key=True)
    next_fire_at = NumberAttribute(range_key=True)


class ListIndex(GlobalSecondaryIndex[M]):
    """Every job under one key, by creation time: listing without a scan."""

    class Meta:
        index_name = "list-index-v2"
        projection = _job_listed("list_key", "created")

    list_key = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class OwnerIndex(GlobalSecondaryIndex[M]):
    class Meta:
        index_name = "owner-index-v2"
        projection = _job_listed("owner", "created")

    owner = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class JobsCreatedIndex(GlobalSecondaryIndex[M]):
    """Jobs by shard (live / deleted)."""

    class Meta:
        index_name = "jobs-created-index-v2"
        projection = _job_listed("list_part", "created")

    list_part = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class JobsUpdatedIndex(GlobalSecondaryIndex[M]):
    """Jobs by shard (live / deleted)."""

    class Meta:
        index_name = "jobs-updated-index-v2"
        projection = _job_listed("list_part", "updated")

    list_part = UnicodeAttribute(hash_key=True)
    updated = NumberAttribute(range_key=True)


class ErrorsCreatedIndex(GlobalSecondaryIndex[M]):
    """Sparse: only records in error carry err_shard (one-slice runs that failed, slices
    in error)."""

    class Meta:
        index_name = "errors-created-index"
        projection = AllProjection()

    err_shard = NumberAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class ErrorsUpdatedIndex(GlobalSecondaryIndex[M]):
    """Sparse: only records in error carry err_shard."""

    class Meta:
        index_name = "errors-updated-index"
        projection = AllProjection()

    err_shard = NumberAttribute(hash_key=True)
    updated = NumberAttribute(range_key=True)


class ExIndex(GlobalSecondaryIndex[M]):
    """A run's keys by its ex_id (get_run_by_ex then reads the run itself) and its
    `config`, which the error listing reads a slice's owner from: neither changes as the
    run goes on, so a run's progress never writes this index."""

    class Meta:
        index_name = "ex-index-v2"
        projection = IncludeProjection(["config"])

    ex_id = UnicodeAttribute(hash_key=True)


class SweepIndex(GlobalSecondaryIndex[M]):
    """Sparse: only non-terminal runs carry sweep_shard and check_at."""

    class Meta:
        index_name = "sweep-index"
        projection = AllProjection()

    sweep_shard = NumberAttribute(hash_key=True)
    check_at = NumberAttribute(range_key=True)


class TallyIndex(GlobalSecondaryIndex[M]):
    """Sparse: only ended runs not yet added to the cluster counters carry tally_shard
    (set by the terminal write itself, removed by the fold that counts them)."""

    class Meta:
        index_name = "tally-index"
        projection = IncludeProjection(list(TALLIED))

    tally_shard = NumberAttribute(hash_key=True)
    ex_id = UnicodeAttribute(range_key=True)


class CreatedIndex(GlobalSecondaryIndex[M]):
    """A job's runs by creation time (OpenSpecimen's fromDate / toDate). A global index,
    not a local one: a local index caps each job's item collection at 10 GB, which a job
    firing every second fills in about two months. A global index is eventually
    consistent: the history reads add the job's newest runs from the table itself
    (history.py). It projects the keys and `status` (the status filter, the counts): a
    page's runs are then read from the table (one BatchGetItem), so the runs' other writes
    (the lease, the tally, the expiry) never write this index."""

    class Meta:
        index_name = "job-created-index-v2"
        projection = IncludeProjection(["status"])

    job_id = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class ExCreatedIndex(GlobalSecondaryIndex[M]):
    """Runs by status, deletion and shard (a listing reads the window's runs from the
    table: see RUN_LISTED)."""

    class Meta:
        index_name = "ex-created-index-v2"
        projection = IncludeProjection(list(RUN_LISTED))

    ex_part = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class ExUpdatedIndex(GlobalSecondaryIndex[M]):
    """Runs by status, deletion and shard (a listing reads the window's runs from the
    table: see RUN_LISTED)."""

    class Meta:
        index_name = "ex-updated-index-v2"
        projection = IncludeProjection(list(RUN_LISTED))

    ex_part = UnicodeAttribute(hash_key=True)
    updated = NumberAttribute(range_key=True)


class AssetListIndex(GlobalSecondaryIndex[M]):
    """Every asset under one key, by creation time (name claims have no list_key)."""

    class Meta:
        index_name = "list-index"
        projection = AllProjection()

    list_key = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class AssetNameIndex(GlobalSecondaryIndex[M]):
    class Meta:
        index_name = "name-index"
        projection = AllProjection()

    name = UnicodeAttribute(hash_key=True)
    version = UnicodeAttribute(range_key=True)
