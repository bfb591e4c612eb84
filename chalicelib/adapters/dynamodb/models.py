"""PynamoDB models: the only place that knows the tables' shapes.

Models are built per Settings (table names and endpoint come from the environment), so a
process can talk to two stores at once (tests run one contract suite over moto and
DynamoDB Local).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection import Connection
from pynamodb.indexes import (
    AllProjection,
    GlobalSecondaryIndex,
    IncludeProjection,
    LocalSecondaryIndex,
)
from pynamodb.models import Model

from chalicelib.config import Settings

PAY_PER_REQUEST = "PAY_PER_REQUEST"
# What the tally index projects of an ended run: all a fold adds to the cluster counters.
TALLIED = ("failed", "finished_at", "processed", "started_at", "workers", "workers_lost")


@dataclass(frozen=True)
class Models:
    job: Any
    run: Any
    slice: Any
    supervisor: Any
    alert: Any
    asset: Any
    connection: Connection

    @property
    def all(self) -> tuple[Any, ...]:
        return (self.job, self.run, self.slice, self.supervisor, self.alert, self.asset)


POOL_CONNECTIONS = 256


def build_models(settings: Settings) -> Models:
    """Model classes bound to the settings' table names, region and endpoint."""
    host = settings.ddb_endpoint
    region = settings.region

    class BaseMeta:
        billing_mode = PAY_PER_REQUEST
        connect_timeout_seconds = 5
        read_timeout_seconds = 10
        max_retry_attempts = 5
        # a batch claims and runs its starts side by side, and the local stack's pollers
        # share one process (20 batches of 10): a smaller pool drops and reopens sockets
        max_pool_connections = POOL_CONNECTIONS

    def meta(table: str) -> Any:
        return type("Meta", (BaseMeta,), {"table_name": table, "host": host, "region": region})

    class DueIndex(GlobalSecondaryIndex[Any]):
        """Sparse: only SCHEDULED jobs carry due_shard and next_fire_at."""

        class Meta:
            index_name = "due-index"
            projection = AllProjection()

        due_shard = NumberAttribute(hash_key=True)
        next_fire_at = NumberAttribute(range_key=True)

    class ListIndex(GlobalSecondaryIndex[Any]):
        """Every job under one key, by creation time: listing without a scan."""

        class Meta:
            index_name = "list-index"
            projection = AllProjection()

        list_key = UnicodeAttribute(hash_key=True)
        created = NumberAttribute(range_key=True)

    class OwnerIndex(GlobalSecondaryIndex[Any]):
        class Meta:
            index_name = "owner-index"
            projection = AllProjection()

        owner = UnicodeAttribute(hash_key=True)
        created = NumberAttribute(range_key=True)

    def listing(name: str, hash_name: str, range_name: str, doc: str) -> Any:
        """A GSI on a sharded string partition and a numeric sort key (listings)."""
        attrs = {
            "__doc__": doc,
            "Meta": type("Meta", (), {"index_name": name, "projection": AllProjection()}),
            hash_name: UnicodeAttribute(hash_key=True),
            range_name: NumberAttribute(range_key=True),
        }
        return type(name.title().replace("-", ""), (GlobalSecondaryIndex,), attrs)()

    def error_index(name: str, range_name: str, doc: str) -> Any:
        """A sparse GSI: only records in error carry err_shard."""
        attrs = {
            "__doc__": doc,
            "Meta": type("Meta", (), {"index_name": name, "projection": AllProjection()}),
            "err_shard": NumberAttribute(hash_key=True),
            range_name: NumberAttribute(range_key=True),
        }
        return type(name.title().replace("-", ""), (GlobalSecondaryIndex,), attrs)()

    class JobModel(Model):
        Meta = meta(settings.jobs_table)
        job_id = UnicodeAttribute(hash_key=True)
        definition = JSONAttribute()
        name = UnicodeAttribute()
        owner = UnicodeAttribute()
        state = UnicodeAttribute()
        active = BooleanAttribute(default=True)
        deleted = BooleanAttribute(default=False)
        deleted_on = NumberAttribute(null=True)
        next_fire_at = NumberAttribute(null=True)
        due_shard = NumberAttribute(null=True)
        anchor = NumberAttribute(null=True)
        version = NumberAttribute(default=0)
        active_slots = UnicodeSetAttribute(null=True)
        buffered_slot = UnicodeAttribute(null=True)
        suspended_at = NumberAttribute(null=True)
        resumed_at = NumberAttribute(null=True)
        list_key = UnicodeAttribute(default="job")
        list_part = UnicodeAttribute(null=True)
        created = NumberAttribute()
        updated = NumberAttribute()
        due_index = DueIndex()
        list_index = ListIndex()
        owner_index = OwnerIndex()
        jobs_created_index = listing(
            "jobs-created-index", "list_part", "created", "Jobs by shard (live / deleted)."
        )
        jobs_updated_index = listing(
            "jobs-updated-index", "list_part", "updated", "Jobs by shard (live / deleted)."
        )

    class ExIndex(GlobalSecondaryIndex[Any]):
        class Meta:
            index_name = "ex-index"
            projection = AllProjection()

        ex_id = UnicodeAttribute(hash_key=True)

    class SweepIndex(GlobalSecondaryIndex[Any]):
        """Sparse: only non-terminal runs carry sweep_shard and check_at."""

        class Meta:
            index_name = "sweep-index"
            projection = AllProjection()

        sweep_shard = NumberAttribute(hash_key=True)
        check_at = NumberAttribute(range_key=True)

    class TallyIndex(GlobalSecondaryIndex[Any]):
        """Sparse: only ended runs not yet added to the cluster counters carry tally_shard
        (set by the terminal write itself, removed by the fold that counts them)."""

        class Meta:
            index_name = "tally-index"
            projection = IncludeProjection(list(TALLIED))

        tally_shard = NumberAttribute(hash_key=True)
        ex_id = UnicodeAttribute(range_key=True)

    class CreatedIndex(LocalSecondaryIndex[Any]):
        """A job's runs by creation time (OpenSpecimen's fromDate / toDate)."""

        class Meta:
            index_name = "created-index"
            projection = AllProjection()

        job_id = UnicodeAttribute(hash_key=True)
        created = NumberAttribute(range_key=True)

    class RunModel(Model):
        Meta = meta(settings.runs_table)
        job_id = UnicodeAttribute(hash_key=True)
        slot = UnicodeAttribute(range_key=True)
        ex_id = UnicodeAttribute()
        status = UnicodeAttribute()
        trigger = UnicodeAttribute()
        args = UnicodeAttribute(null=True)
        config = JSONAttribute()
        scheduled_start = NumberAttribute()
        created = NumberAttribute()
        updated = NumberAttribute()
        started_at = NumberAttribute(null=True)
        finished_at = NumberAttribute(null=True)
        workers = NumberAttribute(default=1)
        slices_total = NumberAttribute(default=0)
        processed = NumberAttribute(default=0)
        failed = NumberAttribute(default=0)
        remaining = NumberAttribute(default=0)
        queued_cursor = NumberAttribute(default=0)
        inline = BooleanAttribute(default=False)
        attempts = NumberAttribute(default=0)
        lease_token = UnicodeAttribute(null=True)
        lease_expires_at = NumberAttribute(null=True)
        check_at = NumberAttribute(null=True)
        sweep_shard = NumberAttribute(null=True)
        result = JSONAttribute(null=True)
        has_errors = BooleanAttribute(default=False)
        errors = JSONAttribute(null=True)
        reason = UnicodeAttribute(null=True)
        holds_slot = BooleanAttribute(default=False)
        buffered = BooleanAttribute(default=False)
        start_after = NumberAttribute(null=True)
        presliced = BooleanAttribute(default=False)
        recovered_from = UnicodeAttribute(null=True)
        deleted = BooleanAttribute(default=False)
        ex_part = UnicodeAttribute(null=True)
        err_shard = NumberAttribute(null=True)
        workers_lost = NumberAttribute(default=0)
        tally_shard = NumberAttribute(null=True)
        ex_index = ExIndex()
        tally_index = TallyIndex()
        sweep_index = SweepIndex()
        created_index = CreatedIndex()
        ex_created_index = listing(
            "ex-created-index", "ex_part", "created", "Runs by status, deletion and shard."
        )
        ex_updated_index = listing(
            "ex-updated-index", "ex_part", "updated", "Runs by status, deletion and shard."
        )
        errors_created_index = error_index(
            "errors-created-index", "created", "One-slice runs that failed."
        )
        errors_updated_index = error_index(
            "errors-updated-index", "updated", "One-slice runs that failed."
        )

    class SliceModel(Model):
        Meta = meta(settings.slices_table)
        ex_id = UnicodeAttribute(hash_key=True)
        slice_id = UnicodeAttribute(range_key=True)
        order = NumberAttribute()
        request = JSONAttribute()
        state = UnicodeAttribute()
        attempts = NumberAttribute(default=0)
        lease_token = UnicodeAttribute(null=True)
        lease_expires_at = NumberAttribute(null=True)
        not_before = NumberAttribute(null=True)
        result = JSONAttribute(null=True)
        error = UnicodeAttribute(null=True)
        err_shard = NumberAttribute(null=True)
        created = NumberAttribute()
        updated = NumberAttribute()
        errors_created_index = error_index("errors-created-index", "created", "Slices in error.")
        errors_updated_index = error_index("errors-updated-index", "updated", "Slices in error.")

    class SupervisorModel(Model):
        Meta = meta(settings.supervisor_table)
        key = UnicodeAttribute(hash_key=True)
        state = UnicodeAttribute()
        last_tick_at = NumberAttribute(null=True)
        ticks = NumberAttribute(default=0)
        last_stats = JSONAttribute(null=True)
        last_creating_tick = JSONAttribute(null=True)
        reason = UnicodeAttribute(null=True)
        halted_at = NumberAttribute(null=True)
        restarted_at = NumberAttribute(null=True)
        updated = NumberAttribute()
        failed_ticks = NumberAttribute(null=True)
        last_failure_at = NumberAttribute(null=True)
        last_failure = UnicodeAttribute(null=True)

    class AlertModel(Model):
        """Alerts newest last under one key (a sort key of time and id): the alerts
        endpoint reads the newest with one query, never a scan."""

        Meta = meta(settings.alerts_table)
        kind = UnicodeAttribute(hash_key=True)
        alert_id = UnicodeAttribute(range_key=True)
        created = NumberAttribute()
        reason = UnicodeAttribute()
        job_id = UnicodeAttribute(null=True)
        ex_id = UnicodeAttribute(null=True)
        slot = UnicodeAttribute(null=True)
        detail = JSONAttribute(null=True)

    class AssetListIndex(GlobalSecondaryIndex[Any]):
        """Every asset under one key, by creation time (name claims have no list_key)."""

        class Meta:
            index_name = "list-index"
            projection = AllProjection()

        list_key = UnicodeAttribute(hash_key=True)
        created = NumberAttribute(range_key=True)

    class AssetNameIndex(GlobalSecondaryIndex[Any]):
        class Meta:
            index_name = "name-index"
            projection = AllProjection()

        name = UnicodeAttribute(hash_key=True)
        version = UnicodeAttribute(range_key=True)

    class AssetModel(Model):
        """Two kinds of item: an asset (keyed by its sha1) and the claim of its name and
        version (keyed `name@version`, holding only `target`), written together so that
        one name and version is one bundle."""

        Meta = meta(settings.assets_table)
        asset_id = UnicodeAttribute(hash_key=True)
        name = UnicodeAttribute(null=True)
        version = UnicodeAttribute(null=True)
        sha = UnicodeAttribute(null=True)
        size = NumberAttribute(null=True)
        s3_key = UnicodeAttribute(null=True)
        root = UnicodeAttribute(null=True)
        manifest = JSONAttribute(null=True)
        list_key = UnicodeAttribute(null=True)
        created = NumberAttribute(null=True)
        target = UnicodeAttribute(null=True)
        list_index = AssetListIndex()
        name_index = AssetNameIndex()

    connection = Connection(
        region=region,
        host=host,
        connect_timeout_seconds=5,
        read_timeout_seconds=10,
        max_retry_attempts=5,
        max_pool_connections=POOL_CONNECTIONS,
    )
    return Models(
        JobModel, RunModel, SliceModel, SupervisorModel, AlertModel, AssetModel, connection
    )


def build_stats_model(settings: Settings) -> Any:
    """The cluster counters: `stats#<shard>` items in the supervisor table (its key is a
    plain string, so they need no table of their own). Each shard is added to only by folds
    of its own tally shard, so no single item takes every run's update."""

    class StatsModel(Model):
        class Meta:
            table_name = settings.supervisor_table
            host = settings.ddb_endpoint
            region = settings.region
            billing_mode = PAY_PER_REQUEST
            connect_timeout_seconds = 5
            read_timeout_seconds = 10
            max_retry_attempts = 5

        key = UnicodeAttribute(hash_key=True)
        runs = NumberAttribute(default=0)
        processed = NumberAttribute(default=0)
        failed = NumberAttribute(default=0)
        job_duration = NumberAttribute(default=0)
        workers_joined = NumberAttribute(default=0)
        workers_disconnected = NumberAttribute(default=0)
        updated = NumberAttribute(null=True)

    return StatsModel
