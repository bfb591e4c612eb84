"""PynamoDB models: the only place that knows the tables' shapes.

The models are declared once, here, with typed attributes; they hold no table name. A
store works with subclasses bound to the table names, region and endpoint of its
Settings (`build_models`), so a process can talk to two stores at once (tests run one
contract suite over moto and DynamoDB Local). Bound classes are cached per binding.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import TypeVar, cast

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection import Connection
from pynamodb.models import MetaModel, Model

from chalicelib.adapters.dynamodb.indexes import (
    AssetListIndex,
    AssetNameIndex,
    CreatedIndex,
    DueIndex,
    ErrorsCreatedIndex,
    ErrorsUpdatedIndex,
    ExCreatedIndex,
    ExIndex,
    ExUpdatedIndex,
    JobsCreatedIndex,
    JobsUpdatedIndex,
    ListIndex,
    OwnerIndex,
    SweepIndex,
    TallyIndex,
)
from chalicelib.config import Settings

PAY_PER_REQUEST = "PAY_PER_REQUEST"
POOL_CONNECTIONS = 256
BINDINGS_CACHED = 16

M = TypeVar("M", bound=Model)


class TableMeta:
    """What every bound model's Meta shares (the binding adds table, host and region)."""

    billing_mode = PAY_PER_REQUEST
    connect_timeout_seconds = 5
    read_timeout_seconds = 10
    max_retry_attempts = 5
    # a batch claims and runs its starts side by side, and the local stack's pollers
    # share one process (20 batches of 10): a smaller pool drops and reopens sockets
    max_pool_connections = POOL_CONNECTIONS


# ---- jobs ------------------------------------------------------------------------------------


class JobModel(Model):
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
    waiting_slots = UnicodeSetAttribute(null=True)
    unrecorded = JSONAttribute(null=True)
    suspended_at = NumberAttribute(null=True)
    resumed_at = NumberAttribute(null=True)
    list_key = UnicodeAttribute(default="job")
    list_part = UnicodeAttribute(null=True)
    created = NumberAttribute()
    updated = NumberAttribute()
    due_index: DueIndex[JobModel] = DueIndex()
    list_index: ListIndex[JobModel] = ListIndex()
    owner_index: OwnerIndex[JobModel] = OwnerIndex()
    jobs_created_index: JobsCreatedIndex[JobModel] = JobsCreatedIndex()
    jobs_updated_index: JobsUpdatedIndex[JobModel] = JobsUpdatedIndex()


# ---- runs ----------------------------------------------------------------------------------


RUN_FLAGS = (
    "inline",
    "has_errors",
    "holds_slot",
    "buffered",
    "catchup",
    "ahead_of_catchup",
    "presliced",
    "deleted",
)


class RunModel(Model):
    # A flag (RUN_FLAGS) is stored only while true: a missing one reads false, and the
    # conditions on flags say `!= True` or `== True`. Eight false flags written out were
    # ~80 bytes, enough to take a started run past 1 KB, which doubles its write units.
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
    inline = BooleanAttribute(null=True)
    attempts = NumberAttribute(default=0)
    lease_token = UnicodeAttribute(null=True)
    lease_expires_at = NumberAttribute(null=True)
    check_at = NumberAttribute(null=True)
    sweep_shard = NumberAttribute(null=True)
    result = JSONAttribute(null=True)
    has_errors = BooleanAttribute(null=True)
    errors = JSONAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    holds_slot = BooleanAttribute(null=True)
    buffered = BooleanAttribute(null=True)
    catchup = BooleanAttribute(null=True)
    ahead_of_catchup = BooleanAttribute(null=True)
    start_after = NumberAttribute(null=True)
    presliced = BooleanAttribute(null=True)
    recovered_from = UnicodeAttribute(null=True)
    deleted = BooleanAttribute(null=True)
    ex_part = UnicodeAttribute(null=True)
    err_shard = NumberAttribute(null=True)
    workers_lost = NumberAttribute(default=0)
    tally_shard = NumberAttribute(null=True)
    notify_due = JSONAttribute(null=True)  # events still to record (Run.notify_due)
    # DynamoDB's TTL (retention.py): set on ledger records when written, on a finished run
    # once a newer run of its job ran, so a job's latest run is kept
    expires_at = TTLAttribute(null=True)
    ex_index: ExIndex[RunModel] = ExIndex()
    tally_index: TallyIndex[RunModel] = TallyIndex()
    sweep_index: SweepIndex[RunModel] = SweepIndex()
    created_index: CreatedIndex[RunModel] = CreatedIndex()
    ex_created_index: ExCreatedIndex[RunModel] = ExCreatedIndex()
    ex_updated_index: ExUpdatedIndex[RunModel] = ExUpdatedIndex()
    errors_created_index: ErrorsCreatedIndex[RunModel] = ErrorsCreatedIndex()
    errors_updated_index: ErrorsUpdatedIndex[RunModel] = ErrorsUpdatedIndex()


# ---- slices, supervisor, counters, alerts ----------------------------------------------------


class SliceModel(Model):
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
    wait = JSONAttribute(null=True)
    expires_at = TTLAttribute(null=True)  # set when the slice ends (retention.py)
    errors_created_index: ErrorsCreatedIndex[SliceModel] = ErrorsCreatedIndex()
    errors_updated_index: ErrorsUpdatedIndex[SliceModel] = ErrorsUpdatedIndex()


class SupervisorModel(Model):
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


class StatsModel(Model):
    """The cluster counters: `stats#<shard>` items in the supervisor table (its key is a
    plain string, so they need no table of their own). Each shard is added to only by folds
    of its own tally shard, so no single item takes every run's update."""

    key = UnicodeAttribute(hash_key=True)
    runs = NumberAttribute(default=0)
    processed = NumberAttribute(default=0)
    failed = NumberAttribute(default=0)
    job_duration = NumberAttribute(default=0)
    workers_joined = NumberAttribute(default=0)
    workers_disconnected = NumberAttribute(default=0)
    updated = NumberAttribute(null=True)


class QuotaModel(Model):
    """An owner's quota of one kind: `quota#<kind>#<owner>` items in the supervisor table,
    the set of what counts against the owner's limit (job ids; its runs' `job_id|slot`)."""

    key = UnicodeAttribute(hash_key=True)
    members = UnicodeSetAttribute(null=True)


class AlertModel(Model):
    """Alerts newest last under one key (a sort key of time and id): the alerts
    endpoint reads the newest with one query, never a scan."""

    kind = UnicodeAttribute(hash_key=True)
    alert_id = UnicodeAttribute(range_key=True)
    created = NumberAttribute()
    reason = UnicodeAttribute()
    job_id = UnicodeAttribute(null=True)
    ex_id = UnicodeAttribute(null=True)
    slot = UnicodeAttribute(null=True)
    detail = JSONAttribute(null=True)
    expires_at = TTLAttribute(null=True)  # the stage's history days after it was raised


# ---- assets ----------------------------------------------------------------------------------


class AssetModel(Model):
    """Two kinds of item: an asset (keyed by its sha1) and the claim of its name and
    version (keyed `name@version`, holding `target`), written together so that one name
    and version is one bundle; a deleted asset's claim stays, with `deleted`, forever."""

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
    deleted = NumberAttribute(null=True)
    list_index: AssetListIndex[AssetModel] = AssetListIndex()
    name_index: AssetNameIndex[AssetModel] = AssetNameIndex()


# ---- binding to a place ----------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """Where the tables of one Settings live: region and endpoint (None: AWS itself)."""

    region: str
    host: str | None

    def bind(self, model: type[M], table: str) -> type[M]:
        """`model` bound to `table` here: a subclass with its own Meta, and so its own
        connection, index copies and DoesNotExist."""
        place = {"table_name": table, "host": self.host, "region": self.region}
        meta = type("Meta", (TableMeta,), place)
        namespace = {"Meta": meta, "__module__": model.__module__, "__doc__": model.__doc__}
        bound = cast("type[M]", MetaModel(model.__name__, (model,), namespace))
        _BOUND_MODELS.add(bound)
        return bound

    def connection(self) -> Connection:
        """The connection transactions go through (models each hold their own)."""
        connection = Connection(
            region=self.region,
            host=self.host,
            connect_timeout_seconds=TableMeta.connect_timeout_seconds,
            read_timeout_seconds=TableMeta.read_timeout_seconds,
            max_retry_attempts=TableMeta.max_retry_attempts,
            max_pool_connections=POOL_CONNECTIONS,
        )
        _TX_CONNECTIONS.add(connection)
        return connection


_BOUND_MODELS: weakref.WeakSet[type[Model]] = weakref.WeakSet()
_TX_CONNECTIONS: weakref.WeakSet[Connection] = weakref.WeakSet()


def build_clients(settings: Settings) -> int:
    """Build now the botocore client of every connection to the settings' tables (each bound
    model's, each transaction connection's); how many connections that is. PynamoDB builds
    a client on a connection's first call: 0.1-0.4 s of CPU apiece, about a second each when
    threads race to it on a loaded machine, and a container has a dozen. A container that
    will serve (a Lambda function's, the local stack's) builds them when it starts, not on
    its first tick's or first batch's path."""
    place = (settings.region, settings.ddb_endpoint)
    tables = set(_tables(settings))
    connections = {id(c): c for c in list(_TX_CONNECTIONS) if (c.region, c.host) == place}
    for model in list(_BOUND_MODELS):
        meta = model.Meta
        if (meta.region, meta.host) == place and meta.table_name in tables:
            table = model._get_connection()
            connections[id(table.connection)] = table.connection
    for connection in connections.values():
        connection.client  # noqa: B018 (built on first access)
    return len(connections)


@dataclass(frozen=True)
class Models:
    """The six tables' models, bound to one Settings, and the transactions' connection."""

    job: type[JobModel]
    run: type[RunModel]
    slice: type[SliceModel]
    supervisor: type[SupervisorModel]
    alert: type[AlertModel]
    asset: type[AssetModel]
    connection: Connection

    @property
    def all(self) -> tuple[type[Model], ...]:
        return (self.job, self.run, self.slice, self.supervisor, self.alert, self.asset)


def build_models(settings: Settings) -> Models:
    """Model classes bound to the settings' table names, region and endpoint (cached: the
    same settings get the same classes)."""
    return _bound(Place(settings.region, settings.ddb_endpoint), _tables(settings))


def _tables(settings: Settings) -> tuple[str, str, str, str, str, str]:
    """The six tables' names, in the order `Models` holds them."""
    return (
        settings.jobs_table,
        settings.runs_table,
        settings.slices_table,
        settings.supervisor_table,
        settings.alerts_table,
        settings.assets_table,
    )


@functools.lru_cache(maxsize=BINDINGS_CACHED)
def _bound(place: Place, tables: tuple[str, str, str, str, str, str]) -> Models:
    jobs, runs, slices, supervisor, alerts, assets = tables
    return Models(
        job=place.bind(JobModel, jobs),
        run=place.bind(RunModel, runs),
        slice=place.bind(SliceModel, slices),
        supervisor=place.bind(SupervisorModel, supervisor),
        alert=place.bind(AlertModel, alerts),
        asset=place.bind(AssetModel, assets),
        connection=place.connection(),
    )


@functools.lru_cache(maxsize=BINDINGS_CACHED)
def _stats(place: Place, table: str) -> type[StatsModel]:
    return place.bind(StatsModel, table)


@functools.lru_cache(maxsize=BINDINGS_CACHED)
def _quota(place: Place, table: str) -> type[QuotaModel]:
    return place.bind(QuotaModel, table)


def build_quota_model(settings: Settings) -> type[QuotaModel]:
    """The owners' quotas' model, bound to the settings' supervisor table."""
    return _quota(Place(settings.region, settings.ddb_endpoint), settings.supervisor_table)


def build_stats_model(settings: Settings) -> type[StatsModel]:
    """The counters' model, bound to the settings' supervisor table."""
    return _stats(Place(settings.region, settings.ddb_endpoint), settings.supervisor_table)


class AgentItemModel(Model):
    """Remote agents and their tasks, as items in the supervisor table (its key is a plain
    string): `agent#<principal>` (an agent, `body`), `agents` (the registry: `names` holds
    each `owner<TAB>name` once, `members` each `owner<TAB>name<TAB>principal`),
    `task#<task_id>` (a task: its lease in `state`, `token`, `attempt`, `reclaim_at`, the
    rest in `body`) and `open#<owner>` (`members`: the owner's tasks not ended)."""

    key = UnicodeAttribute(hash_key=True)
    body = JSONAttribute(null=True)
    names = UnicodeSetAttribute(null=True)
    members = UnicodeSetAttribute(null=True)
    state = UnicodeAttribute(null=True)
    token = UnicodeAttribute(null=True)
    attempt = NumberAttribute(null=True)
    reclaim_at = NumberAttribute(null=True)


@functools.lru_cache(maxsize=BINDINGS_CACHED)
def _agent_items(place: Place, table: str) -> type[AgentItemModel]:
    return place.bind(AgentItemModel, table)


def build_agent_model(settings: Settings) -> type[AgentItemModel]:
    """The agents' and tasks' model, bound to the settings' supervisor table."""
    return _agent_items(Place(settings.region, settings.ddb_endpoint), settings.supervisor_table)


# ---- notifications (in the alerts table) -------------------------------------------------------


class NotificationModel(Model):
    """Notifications, in the alerts table under their own keys: the outbox
    (`notify#outbox`, by notification id: only pending ones, so reading it costs the work
    due), the settled record of each id (`notify#done`: it stops the id from being written
    again), and the listings (`notify#delivered`, `notify#failed`, by time and id)."""

    kind = UnicodeAttribute(hash_key=True)
    alert_id = UnicodeAttribute(range_key=True)
    event = UnicodeAttribute()
    job_id = UnicodeAttribute()
    destination = JSONAttribute()
    body = JSONAttribute()
    created = NumberAttribute()
    next_at = NumberAttribute()
    status = UnicodeAttribute()
    attempts = NumberAttribute(default=0)
    claimed_until = NumberAttribute(null=True)
    last_error = UnicodeAttribute(null=True)
    settled_at = NumberAttribute(null=True)


@functools.lru_cache(maxsize=BINDINGS_CACHED)
def _notification(place: Place, table: str) -> type[NotificationModel]:
    return place.bind(NotificationModel, table)


def build_notification_model(settings: Settings) -> type[NotificationModel]:
    """The notifications' model, bound to the settings' alerts table."""
    return _notification(Place(settings.region, settings.ddb_endpoint), settings.alerts_table)
