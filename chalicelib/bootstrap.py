"""The composition root: builds the store, queue, clock and services from Settings."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypedDict, Unpack

import boto3
from botocore.config import Config

from chalicelib.adapters.dynamodb.agents import DynamoAgentStore
from chalicelib.adapters.dynamodb.assets import DynamoAssetStore
from chalicelib.adapters.dynamodb.models import build_clients as build_clients
from chalicelib.adapters.dynamodb.notifications import DynamoNotificationStore
from chalicelib.adapters.dynamodb.store import DynamoStore
from chalicelib.adapters.memory import MemoryNotificationStore
from chalicelib.adapters.notify import Sender
from chalicelib.adapters.s3 import S3BlobStore
from chalicelib.adapters.s3_logs import S3RunLogStore
from chalicelib.adapters.secrets import AwsSecretSource
from chalicelib.adapters.sns import SnsNotifier
from chalicelib.adapters.sqs import SqsQueue, ensure_queues
from chalicelib.adapters.targets_wait import AwsWaitTargets, S3ObjectStore
from chalicelib.config import Settings, get_settings
from chalicelib.domain.assets import AssetLimits
from chalicelib.domain.identity import Principal
from chalicelib.ops.assets import AssetOpLoader
from chalicelib.ops.clients import TargetClients, use
from chalicelib.ops.registry import REGISTRY, Secrets
from chalicelib.ops.sandbox import Sandbox
from chalicelib.ports import (
    AgentStore,
    AssetStore,
    BlobStore,
    Clock,
    NotificationSender,
    NotificationStore,
    Notifier,
    Queue,
    RunLogStore,
    SecretSource,
    Store,
    SystemClock,
)
from chalicelib.services.admin import AdminService
from chalicelib.services.agents import AgentService
from chalicelib.services.assets import AssetService
from chalicelib.services.cluster import ClusterService
from chalicelib.services.executions import ExecutionService
from chalicelib.services.history import HistoryService
from chalicelib.services.job_errors import JobErrorService
from chalicelib.services.jobs import JobService
from chalicelib.services.notifications import NotificationService
from chalicelib.services.runlogs import RunLogService
from chalicelib.services.supervisor import SupervisorService
from chalicelib.services.worker import WorkerService


@dataclass
class Container:
    """Everything a handler needs, built once per process."""

    settings: Settings
    store: Store
    queue: Queue
    clock: Clock
    jobs: JobService
    worker: WorkerService
    supervisor: SupervisorService
    executions: ExecutionService
    notifier: Notifier
    assets: AssetService
    files: BlobStore
    cluster: ClusterService
    admin: AdminService
    history: HistoryService
    job_errors: JobErrorService
    # the principals (or patterns) with the admin role now: the stage's settings, and
    # locally the stack's admin users too, read per request (a new admin needs no restart)
    admins: Callable[[], Sequence[str]]
    run_logs: RunLogService
    agents: AgentService
    notifications: NotificationService | None = None

    def scoped(self, who: Principal) -> Container:
        """The services that serve a caller, acting on behalf of `who` (see
        `JobService.as_`); the engine's own (worker, supervisor) are unchanged."""
        jobs, executions = self.jobs.as_(who), self.executions.as_(who)
        return replace(
            self,
            jobs=jobs,
            executions=executions,
            history=self.history.as_(who),
            job_errors=JobErrorService(self.store, jobs, executions),
            cluster=self.cluster.as_(who),
        )


def aws_client(service: str, settings: Settings) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        config=Config(max_pool_connections=64, retries={"mode": "standard"}),
    )


class Parts(TypedDict, total=False):
    """Parts a caller provides instead of the AWS ones (tests, local stacks)."""

    store: Store
    queue: Queue
    clock: Clock
    notifier: Notifier
    asset_store: AssetStore
    files: BlobStore
    secrets: SecretSource
    admins: Callable[[], Sequence[str]]
    agent_store: AgentStore
    run_logs: RunLogStore
    notification_store: NotificationStore
    sender: NotificationSender


def build_container(settings: Settings | None = None, **parts: Unpack[Parts]) -> Container:
    """The services wired to `parts`, and to the AWS adapters for the parts not given."""
    s = settings or get_settings()
    store = parts.get("store") or DynamoStore(s)
    queue = parts.get("queue") or SqsQueue(aws_client("sqs", s), s.start_queue, s.slice_queue)
    clock = parts.get("clock") or SystemClock()
    notifier = parts.get("notifier") or SnsNotifier(aws_client("sns", s), s.alerts_topic_arn)
    files = parts.get("files") or S3BlobStore(aws_client("s3", s), s.bucket)
    limits = asset_limits(s)
    asset_store = parts.get("asset_store") or DynamoAssetStore(s)
    assets = AssetService(asset_store, files, clock, limits, frozenset(REGISTRY))
    ops = AssetOpLoader(assets.resolve, files, s.asset_cache_dir, limits, asset_sandbox(s))
    source = parts.get("secrets") or AwsSecretSource(
        aws_client("ssm", s), aws_client("secretsmanager", s)
    )
    worker = WorkerService(store, queue, clock, ops=ops, files=files)
    worker.secrets = Secrets(source, s.secrets_prefix)
    logs = run_log_store(s, clock, files, parts)
    worker.run_logs = logs
    use_target_clients(s)
    jobs = JobService(store, queue, clock, s, asset_ops=assets.pin)
    executions = ExecutionService(store, clock, worker, max_workers=s.limits.max_workers)
    agents = AgentService(
        parts.get("agent_store") or DynamoAgentStore(s),
        clock,
        store=store,
        logs=logs,
    )
    agents.notifier, agents.secrets = notifier, worker.secrets
    agents.ended = worker.agent_slice_ended
    worker.agent_tasks = agents.offer_slices
    jobs.check_command = agents.check_command
    notifications = NotificationService(
        parts.get("notification_store") or notification_store_for(store),
        parts.get("sender")
        or Sender(aws_client("sns", s), source, s.notify_topics, s.secrets_prefix, alerts=notifier),
        clock,
    )
    worker.notifications = notifications
    supervisor = SupervisorService(store, queue, clock, s, worker, notifier)
    supervisor.use_notifications(notifications)
    return Container(
        settings=s,
        store=store,
        queue=queue,
        clock=clock,
        jobs=jobs,
        worker=worker,
        supervisor=supervisor,
        executions=executions,
        notifier=notifier,
        assets=assets,
        files=files,
        cluster=ClusterService(store, clock, s),
        admin=AdminService(store, clock, s),
        history=HistoryService(store, clock),
        job_errors=JobErrorService(store, jobs, executions),
        admins=parts.get("admins") or (lambda: s.admins),
        run_logs=RunLogService(logs),
        agents=agents,
        notifications=notifications,
    )


def run_log_store(s: Settings, clock: Clock, files: BlobStore, parts: Parts) -> RunLogStore | None:
    """Where run logs are kept: the stage's bucket, through the files' S3 client. Parts that
    stand for the bucket (`files`) without `run_logs` keep none (tests on fakes that do
    not read them)."""
    if "run_logs" in parts:
        return parts["run_logs"]
    if not isinstance(files, S3BlobStore):
        return None
    return S3RunLogStore(files.client, s.bucket, clock)


def use_target_clients(s: Settings) -> None:
    """The stepfunctions, ecs and s3 ops' clients (only where the stage's allow-list has an
    entry of their kind: a stage that allows nothing makes none)."""
    kinds = {kind for kind, _ in s.targets_allow}
    waits = None
    if kinds & {"stepfunctions", "ecs"}:
        waits = AwsWaitTargets(aws_client("stepfunctions", s), aws_client("ecs", s))
    objects = S3ObjectStore(aws_client("s3", s)) if "s3" in kinds else None
    use(TargetClients(waits=waits, objects=objects))


def notification_store_for(store: Store) -> NotificationStore:
    """Notifications beside the runs: in the DynamoDB store's alerts table, or in memory
    beside a store that is not DynamoDB (tests, simulations)."""
    if isinstance(store, DynamoStore):
        return DynamoNotificationStore(store.settings)
    return MemoryNotificationStore()


def asset_limits(s: Settings) -> AssetLimits:
    return AssetLimits(
        max_bytes=s.asset_max_bytes,
        max_uncompressed=s.asset_max_uncompressed,
        max_ratio=s.asset_max_ratio,
        max_entries=s.asset_max_entries,
    )


def asset_sandbox(s: Settings) -> Sandbox:
    """How asset ops run: in a child process, within an op's run time below its worker's
    function timeout (`max_op_seconds`)."""
    return Sandbox(asset_limits(s), s.limits.max_op_seconds, s.asset_max_output)


def ensure_resources(settings: Settings | None = None) -> Settings:
    """Create the tables, queues, bucket and alerts topic if missing (local stacks, first
    start-up, as the template does on AWS); the settings with the topic's ARN."""
    s = settings or get_settings()
    DynamoStore(s).ensure_tables()
    ensure_queues(
        aws_client("sqs", s), s.start_queue, s.slice_queue, s.dead_letter_queue, s.max_receive_count
    )
    topic = aws_client("sns", s).create_topic(Name=s.alerts_topic)  # an existing one: its ARN
    s3 = aws_client("s3", s)
    try:
        s3.head_bucket(Bucket=s.bucket)
    except Exception:
        s3.create_bucket(Bucket=s.bucket)
    return replace(s, alerts_topic_arn=str(topic["TopicArn"]))


_lock = threading.Lock()
_container: Container | None = None


def get_container() -> Container:
    """The process-wide container, built on first use (creating missing tables, as the
    state store must, unless CADENZA_CREATE_TABLES=false where infra/ owns them)."""
    global _container
    with _lock:
        if _container is None:
            container = build_container()
            if container.settings.create_tables:
                container.store.ensure_tables()
            build_clients(container.settings)
            _container = container
        return _container


def set_container(container: Container | None) -> None:
    """Replace the process-wide container (tests, local stacks)."""
    global _container
    with _lock:
        _container = container
