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
# What the tally index projects of an ended run: all a fold adds to the cluster counters.
TALLIED = ("failed", "finished_at", "processed", "started_at", "workers", "workers_lost")


class DueIndex(GlobalSecondaryIndex[M]):
    """Sparse: only SCHEDULED jobs carry due_shard and next_fire_at."""

    class Meta:
        index_name = "due-index"
        projection = AllProjection()

    due_shard = NumberAttribute(hash_key=True)
    next_fire_at = NumberAttribute(range_key=True)


class ListIndex(GlobalSecondaryIndex[M]):
    """Every job under one key, by creation time: listing without a scan."""

    class Meta:
        index_name = "list-index"
        projection = AllProjection()

    list_key = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class OwnerIndex(GlobalSecondaryIndex[M]):
    class Meta:
        index_name = "owner-index"
        projection = AllProjection()

    owner = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class JobsCreatedIndex(GlobalSecondaryIndex[M]):
    """Jobs by shard (live / deleted)."""

    class Meta:
        index_name = "jobs-created-index"
        projection = AllProjection()

    list_part = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class JobsUpdatedIndex(GlobalSecondaryIndex[M]):
    """Jobs by shard (live / deleted)."""

    class Meta:
        index_name = "jobs-updated-index"
        projection = AllProjection()

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
    class Meta:
        index_name = "ex-index"
        projection = AllProjection()

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
    (history.py)."""

    class Meta:
        index_name = "job-created-index"
        projection = AllProjection()

    job_id = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class ExCreatedIndex(GlobalSecondaryIndex[M]):
    """Runs by status, deletion and shard."""

    class Meta:
        index_name = "ex-created-index"
        projection = AllProjection()

    ex_part = UnicodeAttribute(hash_key=True)
    created = NumberAttribute(range_key=True)


class ExUpdatedIndex(GlobalSecondaryIndex[M]):
    """Runs by status, deletion and shard."""

    class Meta:
        index_name = "ex-updated-index"
        projection = AllProjection()

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
